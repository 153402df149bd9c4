//! Typed message handlers: the pipeline decodes each record with a [`Decode`] before the
//! handler runs, and fails a record that does not decode with [`FailureKind::Decode`]
//! instead of calling the handler.
//!
//! [`FailureKind::Decode`]: super::FailureKind::Decode

use std::future::Future;
use std::sync::Arc;

use super::handler::Handler;
use super::message::{BoxError, Message};
use super::PipelineBuilder;
use crate::codec::{Decode, DecodeError};
use crate::record::Record;

impl<S: Send + Sync + 'static> PipelineBuilder<S, Record> {
    /// The message handler, on decoded records: `decoder` decodes each record and the
    /// handler receives the message (for its metadata and routing) with the decoded value.
    /// A record that does not decode fails with [`FailureKind::Decode`] and the decoder's
    /// error; the handler never sees it, and a retry task sends it straight to the
    /// dead-letter topic, as it was.
    ///
    /// ```
    /// use sluicegate::codec::Text;
    /// use sluicegate::pipeline::{FailureKind, Pipeline, TestPipeline};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let builder = Pipeline::builder(()).handle_decoded(Text, |_, message, text: String| async move {
    ///     println!("{} says {text}", message.offset());
    ///     Ok(message)
    /// });
    /// let mut test = TestPipeline::start(builder).unwrap();
    /// test.push([
    ///     TestPipeline::record("notes", 0, 0, None, b"hello"),
    ///     TestPipeline::record("notes", 0, 1, None, &[0xff]),
    /// ]);
    /// let report = test.finish().await;
    /// assert_eq!(report.stats.processed, 1);
    /// assert_eq!(report.failed[0].reason.kind, FailureKind::Decode);
    /// # }
    /// ```
    ///
    /// [`FailureKind::Decode`]: super::FailureKind::Decode
    pub fn handle_decoded<C, F, Fut>(self, decoder: C, handler: F) -> Self
    where
        C: Decode,
        F: Fn(Arc<S>, Message<Record>, C::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Message<Record>, BoxError>> + Send + 'static,
    {
        let decoder = Arc::new(decoder);
        let handler = Arc::new(handler);
        self.handle_message(move |state, message| {
            let (decoder, handler) = (decoder.clone(), handler.clone());
            async move {
                let value = decode(&*decoder, message.data()).await?;
                handler(state, message, value).await
            }
        })
    }

    /// Runs `handler` on each decoded value as the message handler (see
    /// [`handle_decoded`](Self::handle_decoded) for records that do not decode).
    ///
    /// ```
    /// use sluicegate::codec::Text;
    /// use sluicegate::pipeline::{BoxError, Handler, Pipeline, TestPipeline};
    ///
    /// struct Shout;
    ///
    /// impl Handler<String> for Shout {
    ///     async fn handle(&self, text: &String) -> Result<(), BoxError> {
    ///         println!("{}", text.to_uppercase());
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut test = TestPipeline::start(Pipeline::builder(()).decoded_handler(Text, Shout)).unwrap();
    /// test.push([TestPipeline::record("notes", 0, 0, None, b"hello")]);
    /// assert_eq!(test.finish().await.stats.processed, 1);
    /// # }
    /// ```
    pub fn decoded_handler<C>(self, decoder: C, handler: impl Handler<C::Value>) -> Self
    where
        C: Decode,
        C::Value: Sync,
    {
        let handler = Arc::new(handler);
        self.handle_decoded(decoder, move |_, message, value| {
            let handler = handler.clone();
            async move {
                handler.handle(&value).await?;
                Ok(message)
            }
        })
    }
}

/// Decodes `record`, wrapping a refusal in [`DecodeError`] so the pipeline fails the record
/// as a decode failure.
async fn decode<C: Decode>(decoder: &C, record: &Record) -> Result<C::Value, DecodeError> {
    decoder
        .decode(record)
        .await
        .map_err(|source| DecodeError::new(record, source))
}
