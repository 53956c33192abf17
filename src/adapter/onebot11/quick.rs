//! Quick operations of the HTTP POST transport: a callback can answer the event in the HTTP
//! response itself (`ev.quick(#{reply: ..})`). The slot rides on the event as its protocol
//! state; when the last handle to the event drops (every callback done, or no script wanted
//! it), the collected operations go out as the answer. Operations that come after the answer
//! went (the callbacks outlived `quick_timeout_ms`) go through `.handle_quick_operation`.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::bot::Bot;
use crate::event::Event;

/// Collects the quick operations callbacks ask for on one event.
#[derive(Debug)]
pub struct QuickSlot {
    ops: Mutex<Map<String, Value>>,
    done: Mutex<Option<oneshot::Sender<Map<String, Value>>>>,
    /// Runs the `.handle_quick_operation` fallback when the answer could not wait any longer.
    rt: tokio::runtime::Handle,
    bot: Arc<Bot>,
    /// The event, as `.handle_quick_operation` wants it.
    context: Value,
}

impl QuickSlot {
    /// A slot for the event `context` from `bot` whose operations go to `done`; must be made
    /// inside the async runtime.
    pub fn new(done: oneshot::Sender<Map<String, Value>>, bot: Arc<Bot>, context: Value) -> QuickSlot {
        QuickSlot {
            ops: Mutex::default(),
            done: Mutex::new(Some(done)),
            rt: tokio::runtime::Handle::current(),
            bot,
            context,
        }
    }

    /// Adds operations; false when the answer already went (too late: use the action instead).
    pub fn add(&self, ops: Map<String, Value>) -> bool {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        if done.as_ref().is_none_or(|tx| tx.is_closed()) {
            return false;
        }
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).extend(ops);
        true
    }
}

impl Drop for QuickSlot {
    fn drop(&mut self) {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner).take();
        let ops = std::mem::take(&mut *self.ops.lock().unwrap_or_else(PoisonError::into_inner));
        let late = match done {
            Some(tx) => tx.send(ops).err().filter(|ops| !ops.is_empty()),
            None => None,
        };
        // Nothing is lost: late operations go through the `.handle_quick_operation` action.
        if let Some(ops) = late {
            let (bot, context) = (self.bot.clone(), std::mem::take(&mut self.context));
            self.rt.spawn(async move {
                let params = serde_json::json!({"context": context, "operation": ops});
                if let Err(e) = bot.call(".handle_quick_operation", params).await {
                    tracing::warn!(bot = %bot.name, "late quick operation failed: {e}");
                }
            });
        }
    }
}

/// The quick-operation slot of `ev`, when its transport can still answer it.
pub fn slot(ev: &Event) -> Option<&QuickSlot> {
    ev.state.as_ref().and_then(|s| s.downcast_ref::<QuickSlot>())
}
