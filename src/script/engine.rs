//! One engine builder for `run`, `check` and tests: limits, the progress hook that enforces the
//! wall-clock deadline, logging of `print`/`debug`, module imports and every binding.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::module_resolvers::{FileModuleResolver, ModuleResolversCollection};
use rhai::{Engine, Module, Shared};

use super::context;
use crate::bindings::{Services, event, msg, protocol};
use crate::config::Limits;

/// What every script engine shares: services, the generated modules (built once) and limits.
#[derive(Debug)]
pub struct Globals {
    /// Bots and the reactor.
    pub services: Arc<Services>,
    /// Script limits.
    pub limits: Limits,
    /// Where `import` looks after the script's own directory.
    pub stdlib_dir: Option<PathBuf>,
    modules: Vec<(&'static str, Shared<Module>)>,
}

impl Globals {
    /// Builds the shared modules once.
    pub fn new(services: Arc<Services>, limits: Limits, stdlib_dir: Option<PathBuf>) -> Arc<Globals> {
        let mut modules: Vec<(&'static str, Shared<Module>)> = protocol::NAMESPACES
            .iter()
            .map(|ns| (ns.name, Shared::new(protocol::module(*ns, services.clone()))))
            .collect();
        modules.push(("msg", Shared::new(msg::module())));
        Arc::new(Globals { services, limits, stdlib_dir, modules })
    }

    /// A new engine for the script `name` living in `dir`.
    pub fn engine(&self, name: &str, dir: Option<PathBuf>) -> Engine {
        let mut engine = Engine::new();
        let l = &self.limits;
        engine
            .set_max_operations(l.max_operations)
            .set_max_string_size(l.max_string_size)
            .set_max_array_size(l.max_array_size)
            .set_max_map_size(l.max_map_size)
            .set_max_call_levels(l.max_call_depth)
            .set_max_expr_depths(l.max_call_depth * 2, l.max_call_depth * 2);
        // Checking the clock on every operation would be slow; every 1024th is within microseconds.
        engine.on_progress(|ops| (ops & 0x3FF == 0 && context::expired()).then(|| "deadline".into()));
        let (p, d) = (name.to_owned(), name.to_owned());
        engine.on_print(move |s| tracing::info!(script = %p, "{s}"));
        engine.on_debug(move |s, _, pos| tracing::debug!(script = %d, %pos, "{s}"));

        let mut resolvers = ModuleResolversCollection::new();
        for base in dir.into_iter().chain(self.stdlib_dir.clone()) {
            resolvers.push(FileModuleResolver::new_with_path(base));
        }
        engine.set_module_resolver(resolvers);

        for (name, module) in &self.modules {
            engine.register_static_module(*name, module.clone());
        }
        event::register(&mut engine, self.services.clone());
        engine
    }
}
