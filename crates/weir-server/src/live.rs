//! The app in force, swapped whole on reload. A request takes the app once, when it
//! starts, and finishes on it (streams included); the next request sees the new one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use crate::app::App;

/// Ends the streams still running when the shutdown grace period is over: each writes an
/// error event in its client's dialect (an SDK sees an overloaded upstream it may retry,
/// not a body cut mid-event) and ends.
#[derive(Debug, Default)]
pub struct Cut {
    notify: Arc<Notify>,
    fired: AtomicBool,
}

impl Cut {
    /// Tells every stream watching (and any that starts later) to end now.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether it has fired.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// A future that resolves when it fires (made before the firing, it sees it even if
    /// not yet polled); check [`Cut::fired`] too, for a firing before it was made.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// What one stream polls to learn it must end.
    pub(crate) fn watch(self: &Arc<Self>) -> CutWatch {
        // Made now, the future gets a `notify_waiters` that comes before its first poll.
        CutWatch {
            notified: Box::pin(self.notify.clone().notified_owned()),
            cut: self.clone(),
        }
    }
}

/// One stream's view of a [`Cut`].
pub(crate) struct CutWatch {
    notified: Pin<Box<OwnedNotified>>,
    cut: Arc<Cut>,
}

impl CutWatch {
    /// Whether the stream must end now; if not, `cx` is woken when it must.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        self.cut.fired.load(Ordering::Acquire)
            || matches!(self.notified.as_mut().poll(cx), Poll::Ready(()))
    }
}

/// What reloading does: rebuild from the config file and swap every runtime's app, or
/// return the config's errors (the running config stays).
pub type Reload = Arc<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;

/// A swappable [`App`].
pub struct Live {
    current: RwLock<Arc<App>>,
    reload: RwLock<Option<Reload>>,
    /// Fired when the shutdown grace period is over (the streams of every app this cell
    /// held, before and after reloads).
    cut: Arc<Cut>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Live {
    /// A cell holding `app`.
    pub fn new(app: Arc<App>) -> Arc<Live> {
        let cut = Arc::<Cut>::default();
        // (An app already in force elsewhere keeps that cell's cut.)
        let _ = app.cut.set(cut.clone());
        Arc::new(Live {
            current: RwLock::new(app),
            reload: RwLock::new(None),
            cut,
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
        let _ = app.cut.set(self.cut.clone());
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = app;
    }

    /// What ends the streams still running when the shutdown grace period is over.
    pub fn cut(&self) -> &Arc<Cut> {
        &self.cut
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
