//! The embedded session store: redb, one file (the server keeps it in `--data-dir`).
//!
//! redb is pure Rust (no C build), crash-safe (copy-on-write B-trees, a commit is durable
//! when it returns) and needs no server, which fits an embedded default; see ARCHITECTURE.md.
//! Its API is blocking, so every call runs on a blocking thread.

#![warn(missing_docs)]

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

use mcp_session::{
    LogEntry, Replay, SessionId, SessionRecord, SessionStore, StoreError, StoreFuture, TaskId,
    TaskRecord, Update,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Session id → the record as JSON.
const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
/// (session id, position) → the message as sent.
const LOG: TableDefinition<'_, (&str, u64), &str> = TableDefinition::new("outbound_log");
/// Task id → the task's record as JSON.
const TASKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tasks");

/// Sessions in a redb file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

fn backend(e: impl Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        // Both tables exist from the start, so readers never meet a missing table.
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(RECORDS).map_err(backend)?;
        txn.open_table(LOG).map_err(backend)?;
        txn.open_table(TASKS).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` on a blocking thread.
    fn blocking<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(|e| backend(format!("store worker: {e}")))?
        })
    }
}

fn load(db: &Database, id: &str) -> Result<Option<SessionRecord>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(RECORDS).map_err(backend)?;
    match table.get(id).map_err(backend)? {
        Some(bytes) => decode(id, bytes.value()).map(Some),
        None => Ok(None),
    }
}

fn decode(id: &str, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| backend(format!("session {id} is unreadable: {e}")))
}

fn encode(record: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(backend)
}

impl SessionStore for RedbStore {
    fn create<'a>(&'a self, record: &'a SessionRecord) -> StoreFuture<'a, ()> {
        let record = record.clone();
        self.blocking(move |db| {
            let bytes = encode(&record)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(RECORDS).map_err(backend)?;
                if table.get(record.id.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Exists(record.id));
                }
                table
                    .insert(record.id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        let id = id.clone();
        self.blocking(move |db| load(db, id.as_str()))
    }

    fn update<'a>(&'a self, id: &'a SessionId, update: &'a Update) -> StoreFuture<'a, ()> {
        let (id, update) = (id.clone(), update.clone());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut records = txn.open_table(RECORDS).map_err(backend)?;
                let mut record: SessionRecord = match records.get(id.as_str()).map_err(backend)? {
                    Some(bytes) => decode(id.as_str(), bytes.value())?,
                    None => return Err(StoreError::NotFound(id)),
                };
                record.apply(&update);
                let bytes = encode(&record)?;
                records
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                let mut log = txn.open_table(LOG).map_err(backend)?;
                for entry in &update.entries {
                    log.insert((id.as_str(), entry.seq), entry.text.as_str())
                        .map_err(backend)?;
                }
                // Positions are consecutive, so the cap is a bound on the oldest position.
                let keep_from = update.keep_from(record.next_seq.saturating_sub(1));
                if !update.entries.is_empty() && keep_from > 1 {
                    log.retain_in((id.as_str(), 0)..(id.as_str(), keep_from), |_, _| false)
                        .map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
    }

    fn replay<'a>(&'a self, id: &'a SessionId, after: u64) -> StoreFuture<'a, Replay> {
        let id = id.clone();
        self.blocking(move |db| {
            let record = load(db, id.as_str())?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let txn = db.begin_read().map_err(backend)?;
            let log = txn.open_table(LOG).map_err(backend)?;
            let mut entries = Vec::new();
            for item in log
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                .map_err(backend)?
            {
                let (key, value) = item.map_err(backend)?;
                entries.push(LogEntry {
                    seq: key.value().1,
                    text: value.value().to_owned(),
                });
            }
            Ok(mcp_session::store::replay_from(
                entries,
                after,
                record.next_seq,
            ))
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, ()> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                txn.open_table(RECORDS)
                    .map_err(backend)?
                    .remove(id.as_str())
                    .map_err(backend)?;
                let mut log = txn.open_table(LOG).map_err(backend)?;
                log.retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
    }

    fn idle_since<'a>(&'a self, before_ms: u64) -> StoreFuture<'a, Vec<SessionId>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(RECORDS).map_err(backend)?;
            let mut idle = Vec::new();
            for item in table.iter().map_err(backend)? {
                let (_, value) = item.map_err(backend)?;
                let record: SessionRecord =
                    serde_json::from_slice(value.value()).map_err(backend)?;
                if record.last_active_ms < before_ms {
                    idle.push(record.id);
                }
            }
            idle.sort();
            Ok(idle)
        })
    }

    fn save_task<'a>(&'a self, record: &'a TaskRecord) -> StoreFuture<'a, ()> {
        let bytes = serde_json::to_vec(record).map_err(backend);
        let id = record.id.clone();
        self.blocking(move |db| {
            let bytes = bytes?;
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(TASKS)
                .map_err(backend)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
    }

    fn load_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, Option<TaskRecord>> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TASKS).map_err(backend)?;
            match table.get(id.as_str()).map_err(backend)? {
                Some(bytes) => serde_json::from_slice(bytes.value())
                    .map(Some)
                    .map_err(|e| backend(format!("task {id} is unreadable: {e}"))),
                None => Ok(None),
            }
        })
    }

    fn delete_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, ()> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(TASKS)
                .map_err(backend)?
                .remove(id.as_str())
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
    }

    fn tasks<'a>(&'a self) -> StoreFuture<'a, Vec<TaskRecord>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TASKS).map_err(backend)?;
            let mut tasks = Vec::new();
            for item in table.iter().map_err(backend)? {
                let (key, value) = item.map_err(backend)?;
                match serde_json::from_slice(value.value()) {
                    Ok(task) => tasks.push(task),
                    // One unreadable record does not hide the others.
                    Err(e) => tracing::error!(task = key.value(), error = %e, "a stored task is unreadable; skipped"),
                }
            }
            Ok(tasks)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_redb_store_conforms_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        let store = RedbStore::open(&path).unwrap();
        mcp_session::store::conformance::run(&store).await;
        let survivors = store.idle_since(u64::MAX).await.unwrap();
        assert_eq!(survivors.len(), 1, "the conformance run leaves one session");
        drop(store);
        // What was committed is there after reopening the file.
        let reopened = RedbStore::open(&path).unwrap();
        let record = reopened.load(&survivors[0]).await.unwrap();
        assert!(record.is_some());
    }

    #[test]
    fn an_unusable_path_is_a_clear_error() {
        let err = RedbStore::open(Path::new("/proc/no/such/dir/sessions.redb"))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/proc/no/such/dir/sessions.redb"),
            "{err}"
        );
    }
}
