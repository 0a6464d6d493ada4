//! The last line of defence around the metadata database: a panic inside
//! redb (a damaged file that its checks missed) becomes an error instead of
//! an abort.
//!
//! A process-wide panic hook is installed once, chaining the previous one:
//! panics on a thread that is inside [`catch`] are recorded quietly (they
//! are reported as errors by the caller); every other panic goes to the
//! previous hook unchanged.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!(" ({}:{})", l.file(), l.line()))
                    .unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".into());
                LAST.with(|l| *l.borrow_mut() = Some(format!("{message}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Run `f`; a panic inside it is returned as `Err(description)`.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|_| {
        LAST.with(|l| l.borrow_mut().take())
            .unwrap_or_else(|| "unknown cause".into())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_becomes_its_message_and_later_calls_work() {
        let err = super::catch(|| -> u32 { panic!("page 7 is not a branch") }).unwrap_err();
        assert!(err.contains("page 7 is not a branch"), "{err}");
        assert_eq!(super::catch(|| 5), Ok(5));
    }
}
