//! Cost of the Deferred machinery: creating, firing and taking a Deferred,
//! per-callback cost, and a 1 000-deep chain of chained Deferreds.
//!
//! Run with `cargo bench -p deferred --bench chain`. The per-callback cost is
//! `create_add10_fire` minus `create_fire_take`, divided by 10 (or, as an
//! upper bound, `create_add10_fire / 10`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use deferred::{succeed, Deferred};

/// Create, add 10 callbacks, fire, take the result.
fn create_add10_fire(c: &mut Criterion) {
    c.bench_function("create_add10_fire", |b| {
        b.iter(|| {
            let (d, r) = Deferred::<u64>::new();
            let mut d = d;
            for _ in 0..10 {
                d = d.add_callback(|x| black_box(x) + 1);
            }
            r.callback(black_box(0)).unwrap();
            let v = d.into_result().ok().unwrap().unwrap();
            black_box(v)
        })
    });
}

/// Create, fire, take: the baseline without callbacks.
fn create_fire_take(c: &mut Criterion) {
    c.bench_function("create_fire_take", |b| {
        b.iter(|| {
            let (d, r) = Deferred::<u64>::new();
            r.callback(black_box(0)).unwrap();
            black_box(d.into_result().ok().unwrap().unwrap())
        })
    });
}

/// `succeed(0)` then 10 callbacks, each running at once as it is added.
fn succeed_add10(c: &mut Criterion) {
    c.bench_function("succeed_add10", |b| {
        b.iter(|| {
            let mut d = succeed(black_box(0u64));
            for _ in 0..10 {
                d = d.add_callback(|x| black_box(x) + 1);
            }
            black_box(d.into_result().ok().unwrap().unwrap())
        })
    });
}

const DEPTH: usize = 1000;

/// 1 000 nested Deferreds: `d[i]`'s callback returns `d[i + 1]`
/// (`add_callback_deferred`). `d[0]..d[998]` are fired first, outermost
/// first, so each ends up waiting on the next; firing the innermost `d[999]`
/// then completes all 1 000 levels (Twisted's `test_boundedStackDepth` shape).
/// Measures building, firing and dropping.
fn chain_1000_deep(c: &mut Criterion) {
    c.bench_function("chain_1000_deep", |b| {
        b.iter(|| {
            let (mut handles, resolvers): (Vec<Deferred<u64>>, Vec<_>) =
                (0..DEPTH).map(|_| Deferred::<u64>::new()).unzip();
            // Link from the innermost outwards: each closure owns the next.
            let mut inner = handles.pop().expect("DEPTH > 0");
            while let Some(d) = handles.pop() {
                inner = d.add_callback_deferred(move |_| inner);
            }
            let outermost = inner;
            for r in &resolvers[..DEPTH - 1] {
                r.callback(black_box(1)).unwrap();
            }
            assert!(!outermost.has_result());
            resolvers[DEPTH - 1].callback(black_box(7)).unwrap();
            black_box(outermost.into_result().ok().unwrap().unwrap())
        })
    });
}

criterion_group!(
    benches,
    create_fire_take,
    create_add10_fire,
    succeed_add10,
    chain_1000_deep
);
criterion_main!(benches);
