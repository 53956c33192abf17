//! One engine builder for `run`, `check` and tests: limits, the progress hook that enforces the
//! wall-clock deadline, logging of `print`/`debug`, module imports and every binding.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::module_resolvers::{FileModuleResolver, ModuleResolversCollection, StaticModuleResolver};
use rhai::packages::{Package, StandardPackage};
use rhai::{Engine, Module, Shared};

use super::context;
use crate::bindings::event::EventRef;
use crate::bindings::kv::KvSpace;
use crate::bindings::schedule::{self, JobRunner, Staged};
use crate::bindings::{Services, chat, event, kv, msg, protocol};
use crate::config::Limits;
use crate::scheduler::{Scheduler, Zone};
use crate::storage::Store;

/// What every script engine shares: services, the generated modules (built once) and limits.
#[derive(Debug)]
pub struct Globals {
    /// Bots and the reactor.
    pub services: Arc<Services>,
    /// Script limits.
    pub limits: Limits,
    /// Where `import` looks after the script's own directory.
    pub stdlib_dir: Option<PathBuf>,
    /// The scheduler, when the runtime has one.
    pub scheduler: Option<Arc<Scheduler>>,
    /// Default time zone of cron jobs.
    pub zone: Zone,
    /// The stdlib modules built into the binary, compiled once.
    builtin_modules: Arc<Vec<(&'static str, Module)>>,
    /// Namespaced modules (`onebot`, `msg`), built once.
    modules: Vec<(&'static str, Shared<Module>)>,
    /// Global modules (Rhai's standard library, `Event`, `KvSpace`, `bot`), built once: one
    /// engine per script stays cheap in memory and load time.
    global: Vec<Shared<Module>>,
}

impl Globals {
    /// Builds the shared modules once. Without a store and scheduler (`check`, `api list`),
    /// `kv::` and the scheduling functions are not registered.
    pub fn new(
        services: Arc<Services>,
        limits: Limits,
        stdlib_dir: Option<PathBuf>,
        scheduler: Option<Arc<Scheduler>>,
        zone: Zone,
    ) -> Arc<Globals> {
        let mut modules: Vec<(&'static str, Shared<Module>)> = protocol::namespaces()
            .map(|ns| (ns.name, shared_module(ns.name, protocol::module(ns, services.clone()))))
            .collect();
        modules.push(("msg", shared_module("msg", msg::module())));
        modules.push(("chat", shared_module("chat", chat::module(services.clone()))));
        modules.push(("time", shared_module("time", crate::bindings::time::module(zone.clone()))));
        modules.push(("rand", shared_module("rand", crate::bindings::random::module())));
        modules.push(("http", shared_module("http", crate::bindings::http::module(services.clone()))));
        modules.push(("json", shared_module("json", crate::bindings::text::json())));
        modules.push(("regex", shared_module("regex", crate::bindings::text::regex())));
        let global = vec![
            StandardPackage::new().as_shared_module(),
            Shared::new(event::module(services.clone())),
            Shared::new(kv::methods()),
            Shared::new(bot_module(services.clone())),
            Shared::new(crate::bindings::text::global()),
        ];
        let builtin_modules = Arc::new(builtin_modules());
        Arc::new(Globals { services, limits, stdlib_dir, scheduler, zone, builtin_modules, modules, global })
    }

    /// A new engine for the script `name` living in `dir`.
    pub fn engine(&self, name: &str, dir: Option<PathBuf>) -> Engine {
        let mut engine = Engine::new_raw();
        for module in &self.global {
            engine.register_global_module(module.clone());
        }
        engine.register_type_with_name::<EventRef>("Event").register_type_with_name::<KvSpace>("KvSpace");
        let l = &self.limits;
        engine
            .set_max_operations(l.max_operations)
            .set_max_string_size(l.max_string_size)
            .set_max_array_size(l.max_array_size)
            .set_max_map_size(l.max_map_size)
            .set_max_call_levels(l.max_call_depth)
            .set_max_expr_depths(l.max_call_depth * 2, l.max_call_depth * 2);
        // Checking the clock on every operation would be slow; every 1024th is within microseconds.
        engine.on_progress(|ops| {
            if ops & 0x3FF != 0 {
                return None;
            }
            super::wait::note_progress();
            context::expired().map(Into::into)
        });
        let (p, d) = (name.to_owned(), name.to_owned());
        engine.on_print(move |s| tracing::info!(script = %p, "{s}"));
        engine.on_debug(move |s, _, pos| tracing::debug!(script = %d, %pos, "{s}"));

        let mut resolvers = ModuleResolversCollection::new();
        for base in dir.into_iter().chain(self.stdlib_dir.clone()) {
            resolvers.push(FileModuleResolver::new_with_path(base));
        }
        // The built-in stdlib travels inside the binary: found wherever it runs, after the
        // script's own directory and the configured stdlib dir (which may override a module).
        let mut builtin = StaticModuleResolver::new();
        for (name, module) in self.builtin_modules.iter() {
            builtin.insert(*name, module.clone());
        }
        resolvers.push(builtin);
        engine.set_module_resolver(resolvers);

        for (name, module) in &self.modules {
            engine.register_static_module(*name, module.clone());
        }
        engine
    }

    /// The key-value store, when the runtime has one (it lives in the services).
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.services.store.as_ref()
    }

    /// Registers what belongs to one script: its `kv::` namespace and its jobs (those its top
    /// level creates wait in the returned staging area).
    pub fn install_script_services(&self, engine: &mut Engine, script: &str, run: JobRunner) -> Staged {
        if let Some(store) = self.store() {
            let ns = script.strip_suffix(".rhai").unwrap_or(script);
            engine.register_static_module("kv", Shared::new(kv::namespace(store.clone(), ns)));
            engine.register_static_module("ratelimit", Shared::new(kv::ratelimit(store.clone(), ns)));
        }
        match &self.scheduler {
            Some(scheduler) => {
                schedule::register(engine, scheduler.clone(), script, self.zone.clone(), &self.limits, run)
            }
            None => Staged::default(),
        }
    }
}

/// The stdlib modules compiled into the binary (`stdlib/*.rhai`): name and source.
pub const BUILTIN_STDLIB: &[(&str, &str)] = &[("args", include_str!("../../stdlib/args.rhai"))];

fn builtin_modules() -> Vec<(&'static str, Module)> {
    let mut engine = Engine::new();
    // Trusted code of our own: no expression-depth limit (debug builds set a low one).
    engine.set_max_expr_depths(0, 0);
    BUILTIN_STDLIB
        .iter()
        .filter_map(|(name, source)| {
            let module = engine
                .compile(source)
                .map_err(|e| e.to_string())
                .and_then(|ast| Module::eval_ast_as_new(rhai::Scope::new(), &ast, &engine).map_err(|e| e.to_string()));
            match module {
                Ok(m) => Some((*name, m)),
                Err(e) => {
                    tracing::error!(module = name, "the built-in stdlib module does not compile: {e}");
                    None
                }
            }
        })
        .collect()
}

/// `bot("name")` / `bot(self_id)`: the rest of this callback's calls go to that bot.
fn bot_module(services: Arc<Services>) -> Module {
    let pick = move |key: String| -> Result<String, Box<rhai::EvalAltResult>> {
        // A configured bot by name or account, else one account of a listener serving several.
        let found = services.bots.iter().find(|b| b.is_named(&key)).cloned();
        let found = found.or_else(|| services.bots.iter().flat_map(|b| b.accounts()).find(|a| a.is_named(&key)));
        let bot = found.ok_or_else(|| {
            let known: Vec<&str> = services.bots.iter().map(|b| b.name.as_str()).collect();
            crate::bindings::convert::script_error(format!("bot(\"{key}\"): no such bot (configured: {known:?})"))
        })?;
        context::use_bot(bot.clone());
        Ok(bot.name.clone())
    };
    let mut m = Module::new();
    let by_name = pick.clone();
    let doc = "send the rest of this callback's calls to the bot with this name or account id; returns its name";
    crate::bindings::documented("bot", &["name_or_self_id: string"], doc)
        .in_global_namespace()
        .set_into_module(&mut m, move |name: &str| by_name(name.to_owned()));
    crate::bindings::documented("bot", &["name_or_self_id: int"], doc)
        .in_global_namespace()
        .set_into_module(&mut m, move |self_id: rhai::INT| pick(self_id.to_string()));
    m
}

/// A module ready to be shared by every engine: with its id set and its index built, Rhai
/// registers it as it is instead of copying and re-indexing it per engine.
fn shared_module(name: &str, mut module: Module) -> Shared<Module> {
    module.set_id(name);
    module.build_index();
    Shared::new(module)
}
