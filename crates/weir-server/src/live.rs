//! The app in force, swapped whole on reload. A request takes the app once, when it
//! starts, and finishes on it (streams included); the next request sees the new one.

use std::sync::{Arc, RwLock};

use crate::app::App;

/// What reloading does: rebuild from the config file and swap every runtime's app, or
/// return the config's errors (the running config stays).
pub type Reload = Arc<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;

/// A swappable [`App`].
pub struct Live {
    current: RwLock<Arc<App>>,
    reload: RwLock<Option<Reload>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Live {
    /// A cell holding `app`.
    pub fn new(app: Arc<App>) -> Arc<Live> {
        Arc::new(Live {
            current: RwLock::new(app),
            reload: RwLock::new(None),
        })
    }

    /// The app in force.
    pub fn get(&self) -> Arc<App> {
        // A poisoned lock still holds a valid Arc: keep serving.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `app` in force; requests already running keep the one they started with.
    pub fn set(&self, app: Arc<App>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = app;
    }

    /// Sets what `POST /reload` does.
    pub fn set_reload(&self, reload: Reload) {
        *self
            .reload
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reload);
    }

    /// Reloads, if this gateway can (it was started from a config file).
    pub fn reload(&self) -> Option<Result<(), Vec<String>>> {
        let r = self
            .reload
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        r.map(|f| f())
    }
}
