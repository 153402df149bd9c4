//! A seek a message handler asks for ([`Message::seek_partition`]): the partition's
//! processor carries it out once the handler call returns, between two records, because only
//! it holds the partition's stream.
//!
//! [`Message::seek_partition`]: super::Message::seek_partition

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::source::Seek;

/// One partition's pending seek, shared by its processor and the messages it hands out.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeekRequest(Arc<Pending>);

#[derive(Debug, Default)]
struct Pending {
    /// Whether a seek waits: read after every record, so it is checked without the lock.
    asked: AtomicBool,
    seek: Mutex<Option<Seek>>,
}

impl SeekRequest {
    /// Asks for `seek`; a later request replaces one not yet carried out.
    pub fn ask(&self, seek: Seek) {
        *self.0.seek.lock().unwrap_or_else(PoisonError::into_inner) = Some(seek);
        self.0.asked.store(true, Ordering::Release);
    }

    /// Whether a seek waits.
    pub fn is_asked(&self) -> bool {
        self.0.asked.load(Ordering::Acquire)
    }

    /// The waiting seek, which is no longer waiting.
    pub fn take(&self) -> Option<Seek> {
        if !self.is_asked() {
            return None;
        }
        let mut seek = self.0.seek.lock().unwrap_or_else(PoisonError::into_inner);
        self.0.asked.store(false, Ordering::Release);
        seek.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_request_wins_and_is_taken_once() {
        let request = SeekRequest::default();
        assert!(!request.is_asked());
        assert_eq!(request.take(), None);
        request.ask(Seek::offset(3));
        request.clone().ask(Seek::offset(7));
        assert!(request.is_asked());
        assert_eq!(request.take(), Some(Seek::offset(7)));
        assert!(!request.is_asked());
        assert_eq!(request.take(), None);
    }
}
