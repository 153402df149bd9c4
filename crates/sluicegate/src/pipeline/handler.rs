//! [`Handler`]: what runs on each record, as a small trait in tower's spirit, and
//! [`BoxHandler`], a handler chosen at run time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::message::BoxError;
use crate::record::Record;

/// Handles records: one at a time with [`handle`](Handler::handle), or a batch at a time
/// with [`handle_batch`](Handler::handle_batch).
///
/// # Contract
///
/// `Ok` means handled. An error fails the record (every record of the batch): a pipeline
/// hands it to its failure handler, and a [`RetryTask`](crate::retry::RetryTask) retries
/// it, or, when the error is a [`Permanent`](super::Permanent), sends it to the dead-letter
/// topic at once. The pipeline acknowledges and commits; a handler never does.
///
/// Calls run concurrently, up to the pipeline's
/// [`concurrency`](super::PipelineBuilder::concurrency), on the async runtime: await I/O,
/// and move blocking work to `tokio::task::spawn_blocking`. A call may be dropped when the
/// pipeline's [`handler_timeout`](super::PipelineBuilder::handler_timeout) passes; a panic
/// fails the record like an error.
///
/// Pipelines take closures too ([`handle_message`](super::PipelineBuilder::handle_message));
/// a `Handler` is the form to share, test and register by name (as `sluice` does).
///
/// ```
/// use sluicegate::pipeline::{BoxError, Handler, Pipeline, TestPipeline};
/// use sluicegate::Record;
///
/// struct RequireValue;
///
/// impl Handler for RequireValue {
///     async fn handle(&self, record: &Record) -> Result<(), BoxError> {
///         match record.value {
///             Some(_) => Ok(()),
///             None => Err("a tombstone".into()),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut test = TestPipeline::start(Pipeline::builder(()).handler(RequireValue)).unwrap();
/// test.push([TestPipeline::record("orders", 0, 0, None, b"paid")]);
/// assert_eq!(test.finish().await.stats.processed, 1);
/// # }
/// ```
pub trait Handler<D: Send + Sync + 'static = Record>: Send + Sync + 'static {
    /// Handles one record.
    fn handle(&self, record: &D) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Handles a batch in one call; the outcome is every record's. By default the records
    /// are handled one after another, and the first failure fails the batch.
    fn handle_batch(&self, records: &[&D]) -> impl Future<Output = Result<(), BoxError>> + Send {
        async move {
            for record in records {
                self.handle(record).await?;
            }
            Ok(())
        }
    }
}

/// A boxed future of a handler call.
type Call<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// [`Handler`] as a trait object.
trait ErasedHandler<D>: Send + Sync {
    fn handle<'a>(&'a self, record: &'a D) -> Call<'a>;
    fn handle_batch<'a>(&'a self, records: &'a [&'a D]) -> Call<'a>;
}

impl<D: Send + Sync + 'static, H: Handler<D>> ErasedHandler<D> for H {
    fn handle<'a>(&'a self, record: &'a D) -> Call<'a> {
        Box::pin(Handler::handle(self, record))
    }

    fn handle_batch<'a>(&'a self, records: &'a [&'a D]) -> Call<'a> {
        Box::pin(Handler::handle_batch(self, records))
    }
}

/// Any [`Handler`], chosen at run time (from configuration, say). Cheap to clone.
///
/// ```
/// use sluicegate::pipeline::{BoxError, BoxHandler, Handler};
/// use sluicegate::Record;
///
/// struct Print;
///
/// impl Handler for Print {
///     async fn handle(&self, record: &Record) -> Result<(), BoxError> {
///         println!("{:?}", record.value);
///         Ok(())
///     }
/// }
///
/// let handlers = vec![BoxHandler::new(Print), BoxHandler::new(Print)];
/// # drop(handlers);
/// ```
pub struct BoxHandler<D = Record>(Arc<dyn ErasedHandler<D>>);

impl<D: Send + Sync + 'static> BoxHandler<D> {
    /// Boxes `handler`.
    pub fn new(handler: impl Handler<D>) -> Self {
        Self(Arc::new(handler))
    }
}

impl<D> Clone for BoxHandler<D> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<D> std::fmt::Debug for BoxHandler<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxHandler")
    }
}

impl<D: Send + Sync + 'static> Handler<D> for BoxHandler<D> {
    async fn handle(&self, record: &D) -> Result<(), BoxError> {
        self.0.handle(record).await
    }

    async fn handle_batch(&self, records: &[&D]) -> Result<(), BoxError> {
        self.0.handle_batch(records).await
    }
}
