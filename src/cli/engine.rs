//! The command line's side of a run: the tokio runtime, the progress sink that draws the
//! engine's events on the terminal, and Ctrl-C. The run itself is `crate::ops::run`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::exec::{Event, Events};

pub use crate::ops::run::DEFAULT_PARALLELISM;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A runtime for commands that only read: one thread is plenty.
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work))
}

/// The CLI's sink for the engine's events: a human line each on stderr, or with `--json` one
/// JSON object each on stdout.
pub(crate) struct Progress {
    pub json: bool,
}

impl Events for Progress {
    fn emit(&self, event: Event) {
        use std::io::Write as _;
        // A closed pipe must not stop an apply: the state records what happens either way.
        if self.json {
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                crate::render::progress::json_line(&event)
            );
        } else {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}",
                crate::render::progress::line(&event)
            );
        }
    }
}

/// Ctrl-C for a whole command, watched from before it takes the lock. Before anything in the
/// cloud changes (planning, the question), the first press cancels (`pressed`): the command
/// lets go of the lock and exits 130 (`ops::Cancelled`). Once the plan is being carried out
/// ([`Interrupts::executing`]), the first press stops new work (`stop`); the second abandons
/// what is in flight (`abort`): the executor returns, its pending operations stay saved for the
/// next run to settle, and the caller lets go of the state's lock before exiting with 130. A
/// further press exits at once, should letting go of the lock hang.
pub(crate) struct Interrupts {
    pub pressed: Arc<tokio::sync::Notify>,
    pub stop: Arc<AtomicBool>,
    pub abort: Arc<AtomicBool>,
    executing: Arc<AtomicBool>,
}

impl Interrupts {
    /// Starts watching; call from within the runtime.
    pub fn watch() -> Self {
        let interrupts = Interrupts {
            pressed: Arc::new(tokio::sync::Notify::new()),
            stop: Arc::new(AtomicBool::new(false)),
            abort: Arc::new(AtomicBool::new(false)),
            executing: Arc::new(AtomicBool::new(false)),
        };
        let (pressed, stop, abort, executing) = (
            interrupts.pressed.clone(),
            interrupts.stop.clone(),
            interrupts.abort.clone(),
            interrupts.executing.clone(),
        );
        let (before, during) = (Arc::new(AtomicUsize::new(0)), AtomicUsize::new(0));
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if !executing.load(Ordering::SeqCst) {
                    if before.fetch_add(1, Ordering::SeqCst) == 0 {
                        pressed.notify_one();
                        eprintln!("\nInterrupted: stopping before anything changes.");
                        continue;
                    }
                    std::process::exit(i32::from(super::EXIT_INTERRUPTED));
                }
                match during.fetch_add(1, Ordering::SeqCst) {
                    0 => {
                        stop.store(true, Ordering::SeqCst);
                        eprintln!(
                            "\nInterrupted: starting nothing new, finishing what is in flight. Press Ctrl-C again to stop at once."
                        );
                    }
                    1 => {
                        abort.store(true, Ordering::SeqCst);
                        eprintln!(
                            "\nStopping: what is in flight stays pending for the next run to settle; letting go of the state's lock. Press Ctrl-C again to exit without letting go."
                        );
                    }
                    _ => std::process::exit(i32::from(super::EXIT_INTERRUPTED)),
                }
            }
        });
        interrupts
    }

    /// From now on the plan is being carried out: presses stop, then abandon, the run.
    pub fn executing(&self) {
        self.executing.store(true, Ordering::SeqCst);
    }
}
