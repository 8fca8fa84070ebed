//! The registry of DB-API modules by name: the stand-in for Python's import
//! of a module by dotted name (`reflect.namedModule(dbapiName)`). It starts
//! with the built-in drivers, which the crate root lists
//! (`crate::builtin_modules`), so this layer does not depend on any driver.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use super::DbApiModule;

type Registry = RwLock<BTreeMap<String, Arc<dyn DbApiModule>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut m: BTreeMap<String, Arc<dyn DbApiModule>> = BTreeMap::new();
        for (name, module) in crate::builtin_modules() {
            m.insert(name.to_owned(), module);
        }
        RwLock::new(m)
    })
}

/// No module is registered under this name. The constructor of a
/// `ConnectionPool` fails with it, as Twisted's fails with an `ImportError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no DB-API module named {name:?} is registered (registered: {known})")]
pub struct UnknownModule {
    /// The name asked for.
    pub name: String,
    /// The registered names, comma-separated.
    pub known: String,
}

/// Registers `module` under `name` (replacing and returning any module
/// registered under it), so `ConnectionPool::new(name, ...)` finds it.
pub fn register_module(name: &str, module: Arc<dyn DbApiModule>) -> Option<Arc<dyn DbApiModule>> {
    registry()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_owned(), module)
}

/// The module registered under `name`.
pub fn lookup_module(name: &str) -> Result<Arc<dyn DbApiModule>, UnknownModule> {
    let reg = registry().read().unwrap_or_else(|p| p.into_inner());
    reg.get(name).cloned().ok_or_else(|| UnknownModule {
        name: name.to_owned(),
        known: reg.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

/// The registered names, sorted.
pub fn registered_modules() -> Vec<String> {
    registry()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .cloned()
        .collect()
}
