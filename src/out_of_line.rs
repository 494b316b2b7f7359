//! Starting a rarely taken branch's future on the heap, from a function of its own.
//!
//! An async function's future is as large as the largest future it might await, and the
//! one that awaits it holds it inline (the release build builds it there: a `memcpy`
//! histogram of a miss, session 18, found no copy over 624 bytes). A branch few requests
//! take (a revalidation, the disk read, a ban, a Vary record's write) would otherwise size
//! every request's futures for itself, up to the connection's task, and the poll function that
//! builds it would keep a stack slot for it. [`start`] builds the branch's future inside a
//! function that is never inlined and boxes it there, so the caller holds one pointer and its
//! frame no slot; the branch, when taken, pays one allocation, one copy and a dynamic call per
//! poll.

use std::future::Future;
use std::pin::Pin;

/// `make()`'s future, built here and boxed: `start(|| branch(args)).await` in place of
/// `branch(args).await`. Behind `dyn`, so the branch's poll stays out of line as well: with
/// the concrete type the compiler inlines it into the caller's poll, and that frame grows by
/// the branch's own (`caching::handle`'s poll went back from 3.4 KB to 21 KB).
#[inline(never)]
pub fn start<'a, F>(
    make: impl FnOnce() -> F,
) -> Pin<Box<dyn Future<Output = F::Output> + Send + 'a>>
where
    F: Future + Send + 'a,
{
    Box::pin(make())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A branch whose state is 4 KiB, held across an await.
    async fn branch(n: u8) -> usize {
        let state = [n; 4096];
        tokio::task::yield_now().await;
        state.iter().map(|&b| usize::from(b)).sum()
    }

    async fn inline(n: u8) -> usize {
        branch(n).await
    }

    async fn apart(n: u8) -> usize {
        start(|| branch(n)).await
    }

    #[tokio::test]
    async fn the_caller_holds_a_pointer_and_the_branch_runs_as_before() {
        assert!(std::mem::size_of_val(&inline(1)) > 4096);
        assert!(std::mem::size_of_val(&apart(1)) <= 32);
        assert_eq!(apart(3).await, inline(3).await);
    }
}
