//! Local ingestion: the counterpart of the S3 event that runs process-manual in AWS. Uploads are
//! queued in memory; what was still `processing` at shutdown is queued again at start-up.
//!
//! Fairness: each user has a queue; `workers` tasks take jobs from the users in turn
//! (round-robin), and never more than [`PER_USER_RUNNING`] of one user's at a time. So one
//! user's big manual (or a hundred of them) occupies at most one worker, and another user's
//! small manual starts as soon as any other worker is free, at the latest after the job each
//! other worker is running — never behind the first user's queue.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use manuel_core::PortError;
use manuel_core::domain::UserId;
use manuel_core::ports::IngestionQueue;
// The same attempts as process-manual on Lambda, in one run of the server, for a dependency
// failure (not for a manual that fails).
use manuel_process_manual::Processor;
use manuel_process_manual::s3_event::PROCESSING_ATTEMPTS;
use tokio::sync::{Notify, watch};

/// One user's manuals processed at the same time, at most.
pub const PER_USER_RUNNING: usize = 1;

#[derive(Debug)]
struct Job {
    user: UserId,
    manual_id: String,
    attempt: u32,
}

#[derive(Default)]
struct Queues {
    /// Waiting jobs per user.
    waiting: HashMap<String, VecDeque<Job>>,
    /// Users with waiting jobs, in the order they are served next.
    turn: VecDeque<String>,
    running: HashMap<String, usize>,
    stopping: bool,
}

impl Queues {
    fn push(&mut self, job: Job) {
        let user = job.user.as_str().to_owned();
        let queue = self.waiting.entry(user.clone()).or_default();
        if queue.is_empty() {
            self.turn.push_back(user);
        }
        queue.push_back(job);
    }

    /// The next user in turn who is under their cap: their oldest job. They go to the back
    /// of the turn.
    fn pop(&mut self) -> Option<Job> {
        let position = self
            .turn
            .iter()
            .position(|user| self.running.get(user).copied().unwrap_or(0) < PER_USER_RUNNING)?;
        let user = self.turn.remove(position)?;
        let queue = self.waiting.get_mut(&user)?;
        let job = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&user);
        } else {
            self.turn.push_back(user.clone());
        }
        *self.running.entry(user).or_default() += 1;
        Some(job)
    }

    fn finished(&mut self, user: &UserId) {
        if let Some(count) = self.running.get_mut(user.as_str()) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.running.remove(user.as_str());
            }
        }
    }
}

pub struct LocalIngestionQueue {
    queues: Mutex<Queues>,
    changed: Notify,
    stopping: watch::Sender<bool>,
    /// Jobs being processed right now.
    busy: watch::Sender<usize>,
}

#[async_trait]
impl IngestionQueue for LocalIngestionQueue {
    async fn enqueue(&self, user: &UserId, manual_id: &str) -> Result<(), PortError> {
        self.push(Job {
            user: user.clone(),
            manual_id: manual_id.to_owned(),
            attempt: 1,
        })
    }
}

impl LocalIngestionQueue {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Queues>, PortError> {
        self.queues
            .lock()
            .map_err(|_| PortError::failed("the ingestion queue lock was poisoned"))
    }

    fn push(&self, job: Job) -> Result<(), PortError> {
        let mut queues = self.lock()?;
        if queues.stopping {
            return Err(PortError::Unavailable {
                service: "ingestion",
                message: "the server is stopping".to_owned(),
            });
        }
        queues.push(job);
        drop(queues);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn next(&self) -> Option<Job> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut queues = self.lock().ok()?;
                if queues.stopping {
                    return None;
                }
                if let Some(job) = queues.pop() {
                    self.busy.send_modify(|busy| *busy += 1);
                    return Some(job);
                }
            }
            changed.await;
        }
    }

    fn finished(&self, user: &UserId) {
        if let Ok(mut queues) = self.lock() {
            queues.finished(user);
        }
        self.busy.send_modify(|busy| *busy = busy.saturating_sub(1));
        self.changed.notify_waiters();
    }

    /// A receiver that turns true when the server stops (the contained indexer kills its
    /// workers then).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Stops taking jobs, interrupts the running ones at their next safe point (their manuals
    /// stay `processing`, resumed at the next start), and waits up to `grace` for them.
    pub async fn stop(&self, grace: Duration) {
        if let Ok(mut queues) = self.lock() {
            queues.stopping = true;
        }
        self.stopping.send_replace(true);
        self.changed.notify_waiters();
        let mut busy = self.busy.subscribe();
        if tokio::time::timeout(grace, busy.wait_for(|busy| *busy == 0))
            .await
            .is_err()
        {
            tracing::warn!("ingestion did not stop in time");
        }
    }
}

/// Starts `workers` ingestion tasks on the current runtime and returns the queue that feeds them.
pub fn start_workers(processor: Processor, workers: usize) -> Arc<LocalIngestionQueue> {
    let queue = Arc::new(LocalIngestionQueue::new());
    for _ in 0..workers.max(1) {
        let queue = Arc::clone(&queue);
        let processor = processor.clone();
        tokio::spawn(async move {
            while let Some(job) = queue.next().await {
                run(&queue, &processor, job).await;
            }
        });
    }
    queue
}

impl LocalIngestionQueue {
    /// A queue with no workers (for [`start_workers`], and tests of the order).
    fn new() -> Self {
        Self {
            queues: Mutex::new(Queues::default()),
            changed: Notify::new(),
            stopping: watch::Sender::new(false),
            busy: watch::Sender::new(0),
        }
    }
}

async fn run(queue: &Arc<LocalIngestionQueue>, processor: &Processor, job: Job) {
    let result = processor.process(&job.user, &job.manual_id).await;
    queue.finished(&job.user);
    let error = match result {
        Ok(_) => return,
        Err(error) => error,
    };
    if *queue.stopping.borrow() {
        tracing::info!(manual_id = %job.manual_id, "ingestion interrupted by the shutdown; resumed at the next start");
    } else if job.attempt < PROCESSING_ATTEMPTS.max_attempts {
        tracing::warn!(manual_id = %job.manual_id, attempt = job.attempt, %error, "processing failed; retrying");
        let queue = Arc::clone(queue);
        tokio::spawn(async move {
            tokio::time::sleep(PROCESSING_ATTEMPTS.delay(job.attempt)).await;
            let _ = queue.push(Job {
                attempt: job.attempt + 1,
                ..job
            });
        });
    } else {
        tracing::error!(manual_id = %job.manual_id, %error, "processing failed; the manual stays `processing` until the next start");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(user: &str, manual: &str) -> Job {
        Job {
            user: UserId::parse(user).unwrap(),
            manual_id: manual.to_owned(),
            attempt: 1,
        }
    }

    fn order(queues: &mut Queues) -> Vec<String> {
        std::iter::from_fn(|| queues.pop())
            .map(|job| job.manual_id)
            .collect()
    }

    #[test]
    fn users_are_served_in_turn_and_one_at_a_time() {
        let mut queues = Queues::default();
        for manual in ["a1", "a2", "a3"] {
            queues.push(job("alice", manual));
        }
        queues.push(job("bob", "b1"));
        queues.push(job("carol", "c1"));
        // One of each user's, then nothing: alice's next waits for her first to finish.
        assert_eq!(order(&mut queues), ["a1", "b1", "c1"]);
        queues.finished(&UserId::parse("alice").unwrap());
        assert_eq!(order(&mut queues), ["a2"]);
        queues.finished(&UserId::parse("bob").unwrap());
        queues.push(job("bob", "b2"));
        assert_eq!(order(&mut queues), ["b2"]);
        queues.finished(&UserId::parse("alice").unwrap());
        assert_eq!(order(&mut queues), ["a3"]);
        assert!(queues.waiting.is_empty() && queues.turn.is_empty());
    }

    #[tokio::test]
    async fn stop_refuses_new_jobs_and_ends_the_workers_loop() {
        let queue = LocalIngestionQueue::new();
        queue.stop(Duration::from_millis(10)).await;
        assert!(queue.next().await.is_none());
        let user = UserId::parse("alice").unwrap();
        assert!(queue.enqueue(&user, "m1").await.is_err());
    }
}
