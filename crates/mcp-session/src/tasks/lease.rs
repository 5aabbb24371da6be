//! Leases: on a store that instances share ([`crate::SessionStore::shared`]), an instance
//! runs a task only while it holds the task's lease, which it renews; the tasks whose lease
//! expired (their instance died) are taken up by another, from their checkpoint, exactly
//! once: taking a lease is atomic in the store. On a store of one instance every lease is
//! granted and nothing is taken up but at start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mcp_protocol::{ErrorObject, error_codes};
use serde_json::json;

use super::{Live, error_value, lock, no_client};
use crate::store::{TaskRecord, TaskStatus, now_ms};
use crate::{Hub, SessionId, TaskId};

/// The name of task `id`'s lease.
fn lease_of(id: &TaskId) -> String {
    format!("task:{id}")
}

/// The name of resumable session `id`'s lease: the instance where it runs.
fn session_lease(id: &SessionId) -> String {
    format!("session:{id}")
}

impl Hub {
    /// Takes the lease on task `id` for this instance.
    pub(super) async fn claim_lease(&self, id: &TaskId) -> Result<bool, crate::StoreError> {
        let config = &self.inner.config;
        let claimed = self
            .inner
            .store
            .claim_lease(&lease_of(id), &config.instance_id, config.task_lease)
            .await?;
        if claimed && self.inner.store.shared() {
            self.inner.metrics.count_lease_claim();
        }
        Ok(claimed)
    }

    /// Gives this instance's lease on task `id` up (it ended, or the server stops).
    pub(super) async fn release_lease(&self, id: &TaskId) {
        let holder = &self.inner.config.instance_id;
        if let Err(e) = self.inner.store.release_lease(&lease_of(id), holder).await {
            // It expires by itself.
            tracing::debug!(task = %id, error = %e, "cannot release a task's lease");
        }
    }

    /// Stops a task here whose lease is gone: another instance runs it now.
    pub(super) fn lose(&self, live: &Live, why: &str) {
        if live.lost.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(task = %live.record().id, reason = why, "a task's lease is lost; it stops here");
        live.sealed.store(true, Ordering::Release);
        live.cancel.cancel();
    }

    /// Takes the lease of a new resumable session here (nobody else can hold a new id), in
    /// the background.
    pub(crate) fn hold_new_session(&self, id: &SessionId) {
        if !self.inner.store.shared() {
            return;
        }
        lock(&self.inner.tasks.held_sessions).insert(id.clone());
        let (hub, name) = (self.clone(), session_lease(id));
        tokio::spawn(async move {
            let config = &hub.inner.config;
            let store = &hub.inner.store;
            if let Err(e) = store
                .claim_lease(&name, &config.instance_id, config.task_lease)
                .await
            {
                tracing::warn!(lease = name, error = %e, "cannot take a new session's lease");
            }
        });
    }

    /// Takes a stored session's lease before it is restored here. When another instance
    /// runs it, asks that one to let it go (it ends it there, its record written and its
    /// calls' tasks left to take up) and waits for the lease: at most twice its time, which
    /// also covers an instance that died and whose lease runs out.
    pub(crate) async fn take_session_lease(&self, id: &SessionId) -> Result<(), ErrorObject> {
        let store = &self.inner.store;
        if !store.shared() {
            return Ok(());
        }
        let config = &self.inner.config;
        let (me, lease, name) = (&config.instance_id, config.task_lease, session_lease(id));
        let failed = |e| ErrorObject::internal(format_args!("the session store failed: {e}"));
        let deadline = tokio::time::Instant::now() + lease * 2;
        let mut asked = false;
        loop {
            let held = store.claim_lease(&name, me, lease).await.map_err(failed)?
                // Still this instance's (a session here that just ended): it stays so.
                || store.renew_lease(&name, me, lease).await.map_err(failed)?;
            if held {
                lock(&self.inner.tasks.held_sessions).insert(id.clone());
                return Ok(());
            }
            if !asked {
                self.publish(crate::bus::Signal::ReleaseSession {
                    session: id.clone(),
                });
                asked = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ErrorObject::internal(format_args!(
                    "session {id} runs on another instance, which did not let it go; retry"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Gives a session's lease up (it ended here), in the background.
    pub(crate) fn release_session_lease(&self, id: &SessionId) {
        if !lock(&self.inner.tasks.held_sessions).remove(id) {
            return;
        }
        let (hub, name) = (self.clone(), session_lease(id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let me = &hub.inner.config.instance_id;
                let _ = hub.inner.store.release_lease(&name, me).await;
            });
        }
    }

    /// Renews the leases of the tasks and sessions running here, all in one round trip. A
    /// task whose lease another instance holds stops here; so does one whose lease could
    /// not be renewed before it runs out (`every` before its end), since another instance
    /// may then take it. A session whose lease another instance took moved there.
    async fn renew_leases(&self, every: std::time::Duration) {
        let lease = self.inner.config.task_lease;
        let running: Vec<Arc<Live>> = lock(&self.inner.tasks.live)
            .values()
            .filter(|live| !live.done.is_cancelled() && !live.lost.load(Ordering::Acquire))
            .cloned()
            .collect();
        // Only the sessions whose lease this instance took: one being restored here waits
        // for its lease first.
        let held: Vec<SessionId> = lock(&self.inner.tasks.held_sessions)
            .iter()
            .cloned()
            .collect();
        if running.is_empty() && held.is_empty() {
            return;
        }
        let names: Vec<String> = running
            .iter()
            .map(|live| lease_of(&live.record().id))
            .chain(held.iter().map(session_lease))
            .collect();
        let holder = &self.inner.config.instance_id;
        let renewed = match self.inner.store.renew_leases(&names, holder, lease).await {
            Ok(renewed) if renewed.len() == names.len() => renewed,
            Ok(renewed) => {
                tracing::warn!(
                    asked = names.len(),
                    answered = renewed.len(),
                    "the store answered a lease renewal in part"
                );
                return;
            }
            Err(e) => {
                // Redis does not answer: a lease may run out meanwhile, and another
                // instance take the task; this one stops before it could.
                for live in &running {
                    if lock(&live.leased).elapsed() >= lease.saturating_sub(every) {
                        self.lose(
                            live,
                            &format!("its lease could not be renewed in time: {e}"),
                        );
                    }
                }
                tracing::debug!(error = %e, "cannot renew leases yet");
                return;
            }
        };
        let (tasks, sessions) = renewed.split_at(running.len());
        for (live, &renewed) in running.iter().zip(tasks) {
            match renewed {
                true => *lock(&live.leased) = Instant::now(),
                false => self.lose(live, "another instance holds its lease"),
            }
        }
        for (id, &renewed) in held.iter().zip(sessions) {
            if !renewed {
                self.leave(id).await;
            }
        }
    }

    /// Keeps this instance's leases (renewed every third of their time) and, on a shared
    /// store, takes up the tasks of instances that died, until the server shuts down.
    pub async fn keep_task_leases(self) {
        let lease = self.inner.config.task_lease;
        let every = lease / 3;
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if !self.inner.store.shared() {
                continue;
            }
            self.renew_leases(every).await;
            ticks += 1;
            // Every other round (two thirds of a lease): the tasks nobody holds.
            if ticks.is_multiple_of(2) {
                match self.take_up_tasks(false).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(tasks = n, "took up tasks whose instance stopped"),
                    Err(e) => tracing::warn!(error = %e, "cannot look for tasks to take up"),
                }
            }
        }
    }
}

impl Hub {
    /// Takes up the tasks that were running and that no instance holds the lease of (their
    /// instance stopped or died): resumes them from their checkpoint, or fails them as
    /// interrupted. At start (`at_start`), also counts each principal's tasks and expires
    /// the old ones.
    pub(crate) async fn take_up_tasks(&self, at_start: bool) -> Result<usize, crate::StoreError> {
        let tasks = self.inner.store.tasks().await?;
        let now = now_ms();
        let mut resumed = 0;
        for record in tasks {
            if at_start && record.expires_ms() <= now {
                self.expire_task(&record).await;
                continue;
            }
            if at_start {
                *lock(&self.inner.tasks.counts)
                    .entry(record.owner.clone())
                    .or_default() += 1;
            }
            if record.status.is_terminal()
                || record.expires_ms() <= now
                || lock(&self.inner.tasks.live).contains_key(&record.id)
                || !self.claim_lease(&record.id).await?
            {
                continue;
            }
            if let TakenUp::Resumed(_) = self.take_up(record.id.clone()).await? {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Takes up task `id`, whose lease this instance just took: read again under the lease
    /// (its last holder may have ended it meanwhile), then resumed here from its checkpoint
    /// when its tool can, else failed as interrupted.
    pub(super) async fn take_up(&self, id: TaskId) -> Result<TakenUp, crate::StoreError> {
        let mut record = match self.inner.store.load_task(&id).await {
            Ok(Some(record)) if !record.status.is_terminal() => record,
            Ok(record) => {
                self.release_lease(&id).await;
                return Ok(TakenUp::Ended(record.map(Box::new)));
            }
            Err(e) => {
                self.release_lease(&id).await;
                return Err(e);
            }
        };
        let resumable = self.inner.catalog.tools().is_resumable(&record.tool);
        if resumable && record.status == TaskStatus::Working {
            tracing::info!(task = %record.id, tool = %record.tool, "resuming a task after its server stopped");
            record.status_message = Some("resumed after a server restart".to_owned());
            let capabilities = no_client(record.client_capabilities.clone());
            return Ok(TakenUp::Resumed(self.start_task(
                record,
                None,
                capabilities,
                None,
                true,
            )));
        }
        let error = ErrorObject::new(
            error_codes::INTERRUPTED,
            format!(
                "the server restarted while the task ran, and `{}` cannot resume an interrupted call; call it again",
                record.tool
            ),
        )
        .with_data(json!({
            "tool": record.tool,
            "progress": record.progress,
            "total": record.total,
        }));
        record.status = TaskStatus::Failed;
        record.status_message = Some(error.message.clone());
        record.error = error_value(&error);
        record.input_requests.clear();
        record.checkpoint = None;
        record.updated_ms = now_ms();
        let saved = self.inner.store.save_task(&record).await;
        self.release_lease(&id).await;
        saved.map(|()| TakenUp::Ended(Some(Box::new(record))))
    }
}

/// What taking up a task came to.
pub(super) enum TakenUp {
    /// It runs here now.
    Resumed(Arc<Live>),
    /// It had ended, or was failed as interrupted (its record, if it is still there).
    Ended(Option<Box<TaskRecord>>),
}
