//! Group commit for webhook deliveries: handlers hand their delivery to one writer thread,
//! which records everything waiting in a single transaction and answers each handler once
//! the transaction is durable. One fsync serves a whole batch, and no tokio worker ever
//! waits on the disk.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::{Announce, DeliveryRecord, Queue};
use crate::domain::JobId;

/// Deliveries written in one transaction at the most.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Option<Vec<JobId>>, String>>;

pub struct Recorder {
    tx: mpsc::Sender<(DeliveryRecord, Reply)>,
}

impl Recorder {
    pub fn spawn(store: Arc<dyn Queue>, announce: Arc<dyn Announce>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(DeliveryRecord, Reply)>();
        std::thread::Builder::new()
            .name("delivery-writer".into())
            .spawn(move || {
                // Ends when the last sender (the HTTP state) is dropped.
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let result = store.record_deliveries(
                        &records,
                        &|j, id| announce.queued(j, id),
                        &|o, n| announce.superseded(o, n),
                    );
                    match result {
                        Ok(outcomes) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, deliveries = replies.len(), "cannot record deliveries");
                            for reply in replies {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Records one delivery; resolves once it is durable. `None` for a delivery seen before.
    pub async fn record(&self, record: DeliveryRecord) -> Result<Option<Vec<JobId>>, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((record, reply))
            .map_err(|_| "the delivery writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the delivery writer has stopped".to_string())?
    }
}
