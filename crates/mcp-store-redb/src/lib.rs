//! The embedded session store: redb, one file (the server keeps it in `--data-dir`).
//!
//! redb is pure Rust (no C build), crash-safe (copy-on-write B-trees, a commit is durable
//! when it returns) and needs no server, which fits an embedded default; see ARCHITECTURE.md.
//! Its API is blocking, so every call runs on a blocking thread.

#![warn(missing_docs)]

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use mcp_session::{
    LogEntry, Replay, SessionId, SessionRecord, SessionStore, StoreError, StoreFuture, TaskId,
    TaskRecord, Update, Usage,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// Session id → the record as JSON.
const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
/// (session id, position) → the message as sent.
const LOG: TableDefinition<'_, (&str, u64), &str> = TableDefinition::new("outbound_log");
/// Task id → the task's record as JSON.
const TASKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tasks");
/// (owner, session id) → nothing: who owns which stored session, to count them without
/// reading the records.
const OWNED: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("owned_sessions");
/// Owner → the bytes it keeps ([`Usage::bytes`]: its session records, their logs' messages
/// and its task records), kept by every write in its transaction; no row for none.
const OWNER_BYTES: TableDefinition<'_, &str, u64> = TableDefinition::new("owner_bytes");
/// `session:<id>` or `task:<id>` → a record that could not be read, set aside: it no longer
/// exists for the server (its session or task is gone), and nothing that reads the others
/// stumbles on it again. Kept for whoever investigates.
const QUARANTINE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("quarantine");

/// Sessions in a redb file.
///
/// After an I/O error (a full disk) redb refuses every later operation until the database is
/// opened again. The store notices: it reports itself unhealthy ([`SessionStore::health`],
/// which `/readyz` reads), and reopens the file at the next operation once the operations in
/// flight are done, at most once a second, until a write succeeds again. What was committed
/// before stays: redb's commits are copy-on-write and durable.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The open database; `None` while it could not be opened again. Operations hold the
    /// read lock while they run, so that a reopening (the write lock) finds no other handle.
    db: RwLock<Option<Arc<Database>>>,
    /// Why the store fails, since the last write that failed for want of its disk.
    broken: Mutex<Option<String>>,
    /// When the file was last opened again.
    reopened: Mutex<Option<Instant>>,
}

fn backend(e: impl Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Whether a backend error says the disk failed (redb then needs reopening).
fn io_failure(message: &str) -> bool {
    message.contains("I/O error") || message.contains("Previous I/O") || message.contains("closed")
}

/// How often a broken database is opened again, at most.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

impl RedbStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = open_database(path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db: RwLock::new(Some(Arc::new(db))),
                broken: Mutex::new(None),
                reopened: Mutex::new(None),
            }),
        })
    }

    /// Runs `f` on a blocking thread; `writes` says whether it changes the store (a success
    /// then proves the disk works again).
    fn run<'a, T: Send + 'static>(
        &'a self,
        writes: bool,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.run(writes, f))
                .await
                .map_err(|e| backend(format!("store worker: {e}")))?
        })
    }

    fn blocking<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        self.run(false, f)
    }

    fn writing<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        self.run(true, f)
    }
}

impl Inner {
    fn run<T>(
        &self,
        writes: bool,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = {
            let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
            match db.as_ref() {
                Some(db) => f(db),
                None => Err(backend(
                    "the store file is closed after an I/O error (a full disk?); it is opened again once it can be",
                )),
            }
        };
        match &result {
            Err(StoreError::Backend(message)) if io_failure(message) => {
                let mut broken = self.broken.lock().unwrap_or_else(PoisonError::into_inner);
                if broken.is_none() {
                    tracing::error!(error = %message, path = %self.path.display(), "the session store fails: its disk refused a write; not ready until a write works again");
                }
                *broken = Some(message.clone());
                drop(broken);
                self.reopen();
            }
            Ok(_) if writes => {
                let was = self
                    .broken
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if was.is_some() {
                    tracing::info!(path = %self.path.display(), "the session store works again");
                }
            }
            _ => {}
        }
        result
    }

    /// Opens the file again (redb refuses everything after an I/O error), at most once per
    /// [`REOPEN_EVERY`].
    fn reopen(&self) {
        {
            let mut last = self.reopened.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < REOPEN_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        // Waits for the operations in flight: then this is the only handle.
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        drop(db.take());
        match open_database(&self.path) {
            Ok(opened) => *db = Some(Arc::new(opened)),
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot open the session store again yet");
            }
        }
    }
}

/// Opens (or creates) the database, with every table. Opening a complete store again writes
/// nothing, so it works on a full disk (reads go on; writes wait for space).
fn open_database(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
    let complete = {
        let txn = db.begin_read().map_err(backend)?;
        txn.open_table(RECORDS).is_ok()
            && txn.open_table(LOG).is_ok()
            && txn.open_table(TASKS).is_ok()
            && txn.open_table(QUARANTINE).is_ok()
            && txn.open_table(OWNED).is_ok()
            && txn.open_table(OWNER_BYTES).is_ok()
    };
    if !complete {
        // Every table exists from the start, so readers never meet a missing table.
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(RECORDS).map_err(backend)?;
        txn.open_table(LOG).map_err(backend)?;
        txn.open_table(TASKS).map_err(backend)?;
        txn.open_table(QUARANTINE).map_err(backend)?;
        txn.open_table(OWNED).map_err(backend)?;
        txn.open_table(OWNER_BYTES).map_err(backend)?;
        txn.commit().map_err(backend)?;
    }
    index_owners(&db)?;
    count_bytes(&db)?;
    Ok(db)
}

/// Fills the owner index from the records when it is empty and they are not (a store written
/// before the index existed).
fn index_owners(db: &Database) -> Result<(), StoreError> {
    {
        let txn = db.begin_read().map_err(backend)?;
        let owned = txn.open_table(OWNED).map_err(backend)?;
        let records = txn.open_table(RECORDS).map_err(backend)?;
        if !owned.is_empty().map_err(backend)? || records.is_empty().map_err(backend)? {
            return Ok(());
        }
    }
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut owned = txn.open_table(OWNED).map_err(backend)?;
        if !owned.is_empty().map_err(backend)? {
            return Ok(());
        }
        let records = txn.open_table(RECORDS).map_err(backend)?;
        for item in records.iter().map_err(backend)? {
            let (key, value) = item.map_err(backend)?;
            // An unreadable one is quarantined when first read: it counts for nobody.
            if let Ok(record) = serde_json::from_slice::<Owner>(value.value()) {
                owned
                    .insert((record.owner.as_str(), key.value()), ())
                    .map_err(backend)?;
            }
        }
    }
    txn.commit().map_err(backend)
}

/// Fills the byte counts from the records, logs and tasks when there are none and there is
/// something to count (a store written before they were kept).
fn count_bytes(db: &Database) -> Result<(), StoreError> {
    {
        let txn = db.begin_read().map_err(backend)?;
        let counted = txn.open_table(OWNER_BYTES).map_err(backend)?;
        let records = txn.open_table(RECORDS).map_err(backend)?;
        let tasks = txn.open_table(TASKS).map_err(backend)?;
        if !counted.is_empty().map_err(backend)?
            || (records.is_empty().map_err(backend)? && tasks.is_empty().map_err(backend)?)
        {
            return Ok(());
        }
    }
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut counted = txn.open_table(OWNER_BYTES).map_err(backend)?;
        if !counted.is_empty().map_err(backend)? {
            return Ok(());
        }
        let mut bytes = std::collections::HashMap::<String, u64>::new();
        let mut owners = std::collections::HashMap::<String, String>::new();
        let records = txn.open_table(RECORDS).map_err(backend)?;
        for item in records.iter().map_err(backend)? {
            let (key, value) = item.map_err(backend)?;
            // An unreadable one is quarantined when first read: it counts for nobody.
            if let Ok(record) = serde_json::from_slice::<Owner>(value.value()) {
                *bytes.entry(record.owner.clone()).or_default() += value.value().len() as u64;
                owners.insert(key.value().to_owned(), record.owner);
            }
        }
        let log = txn.open_table(LOG).map_err(backend)?;
        for item in log.iter().map_err(backend)? {
            let (key, value) = item.map_err(backend)?;
            if let Some(owner) = owners.get(key.value().0) {
                *bytes.entry(owner.clone()).or_default() += value.value().len() as u64;
            }
        }
        let tasks = txn.open_table(TASKS).map_err(backend)?;
        for item in tasks.iter().map_err(backend)? {
            let (_, value) = item.map_err(backend)?;
            if let Ok(task) = serde_json::from_slice::<Owner>(value.value()) {
                *bytes.entry(task.owner).or_default() += value.value().len() as u64;
            }
        }
        for (owner, n) in bytes.into_iter().filter(|(_, n)| *n > 0) {
            counted.insert(owner.as_str(), n).map_err(backend)?;
        }
    }
    txn.commit().map_err(backend)
}

/// Adds `added` bytes to what `owner` keeps and takes `removed` away, in `txn`.
fn charge(
    txn: &redb::WriteTransaction,
    owner: &str,
    added: u64,
    removed: u64,
) -> Result<(), StoreError> {
    if added == removed {
        return Ok(());
    }
    let mut counted = txn.open_table(OWNER_BYTES).map_err(backend)?;
    let now = counted
        .get(owner)
        .map_err(backend)?
        .map_or(0, |n| n.value());
    match now.saturating_add(added).saturating_sub(removed) {
        0 => counted.remove(owner).map_err(backend).map(drop),
        n => counted.insert(owner, n).map_err(backend).map(drop),
    }
}

/// Removes `id` from the owner index (its owner read from `bytes`, or looked for): its
/// owner, when known.
fn unindex(
    owned: &mut redb::Table<'_, (&str, &str), ()>,
    id: &str,
    bytes: &[u8],
) -> Result<Option<String>, StoreError> {
    if let Ok(record) = serde_json::from_slice::<Owner>(bytes) {
        owned.remove((record.owner.as_str(), id)).map_err(backend)?;
        return Ok(Some(record.owner));
    }
    let mut found = Vec::new();
    for item in owned.iter().map_err(backend)? {
        let (key, _) = item.map_err(backend)?;
        let (owner, session) = key.value();
        if session == id {
            found.push(owner.to_owned());
        }
    }
    for owner in &found {
        owned.remove((owner.as_str(), id)).map_err(backend)?;
    }
    Ok(found.pop())
}

/// Removes the record `id` of `table` in `txn`: what it was, if there was one.
fn take(
    txn: &redb::WriteTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
    id: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut table = txn.open_table(table).map_err(backend)?;
    let removed = table.remove(id).map_err(backend)?;
    Ok(removed.map(|bytes| bytes.value().to_vec()))
}

/// Removes a session's record, its log and its place in the index, in `txn`, taking what
/// they kept from its owner: the record removed, if there was one.
fn remove_session(txn: &redb::WriteTransaction, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(bytes) = take(txn, RECORDS, id)? else {
        return Ok(None);
    };
    let owner = unindex(&mut txn.open_table(OWNED).map_err(backend)?, id, &bytes)?;
    let mut logged = 0;
    txn.open_table(LOG)
        .map_err(backend)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, text| {
            logged += text.len() as u64;
            false
        })
        .map_err(backend)?;
    if let Some(owner) = owner {
        charge(txn, &owner, 0, bytes.len() as u64 + logged)?;
    }
    Ok(Some(bytes))
}

/// Loads a session; one that cannot be read is quarantined and is, from then on, no session.
fn load(db: &Database, id: &str) -> Result<Option<SessionRecord>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(RECORDS).map_err(backend)?;
    let bytes = match table.get(id).map_err(backend)? {
        Some(bytes) => bytes,
        None => return Ok(None),
    };
    match serde_json::from_slice(bytes.value()) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            drop((bytes, table, txn));
            quarantine_session(db, id, &e)?;
            Ok(None)
        }
    }
}

/// Sets an unreadable session record aside, with its log.
fn quarantine_session(db: &Database, id: &str, why: &serde_json::Error) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let Some(bytes) = remove_session(&txn, id)? else {
            return Ok(());
        };
        let key = format!("session:{id}");
        txn.open_table(QUARANTINE)
            .map_err(backend)?
            .insert(key.as_str(), bytes.as_slice())
            .map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    // Once per record: it is gone from the sessions now.
    tracing::error!(session = id, error = %why, "a stored session is unreadable; quarantined (the session is gone)");
    Ok(())
}

/// Sets an unreadable task record aside.
fn quarantine_task(db: &Database, id: &str, why: &serde_json::Error) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let Some(bytes) = remove_task(&txn, id)? else {
            return Ok(());
        };
        let key = format!("task:{id}");
        txn.open_table(QUARANTINE)
            .map_err(backend)?
            .insert(key.as_str(), bytes.as_slice())
            .map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    tracing::error!(task = id, error = %why, "a stored task is unreadable; quarantined (the task is gone)");
    Ok(())
}

/// Removes a task's record in `txn`, taking its bytes from its owner (when the record says
/// who: an unreadable one's stay counted until the counts are made again, from scratch, by
/// a store that has none): the record removed, if there was one.
fn remove_task(txn: &redb::WriteTransaction, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(bytes) = take(txn, TASKS, id)? else {
        return Ok(None);
    };
    if let Ok(task) = serde_json::from_slice::<Owner>(&bytes) {
        charge(txn, &task.owner, 0, bytes.len() as u64)?;
    }
    Ok(Some(bytes))
}

/// A record as JSON, refused when it would not read back.
fn encode(record: &impl serde::Serialize, what: impl Display) -> Result<Vec<u8>, StoreError> {
    mcp_session::store::encode_record(record, what)
}

impl SessionStore for RedbStore {
    fn create<'a>(&'a self, record: &'a SessionRecord) -> StoreFuture<'a, ()> {
        let record = record.clone();
        self.writing(move |db| {
            let bytes = encode(&record, format_args!("session {}", record.id))?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(RECORDS).map_err(backend)?;
                if table.get(record.id.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Exists(record.id));
                }
                table
                    .insert(record.id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                txn.open_table(OWNED)
                    .map_err(backend)?
                    .insert((record.owner.as_str(), record.id.as_str()), ())
                    .map_err(backend)?;
            }
            charge(&txn, &record.owner, bytes.len() as u64, 0)?;
            txn.commit().map_err(backend)
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        let id = id.clone();
        self.blocking(move |db| load(db, id.as_str()))
    }

    fn update<'a>(&'a self, id: &'a SessionId, update: &'a Update) -> StoreFuture<'a, ()> {
        let (id, update) = (id.clone(), update.clone());
        self.writing(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut records = txn.open_table(RECORDS).map_err(backend)?;
                let (decoded, old_len) = match records.get(id.as_str()).map_err(backend)? {
                    Some(bytes) => (
                        serde_json::from_slice::<SessionRecord>(bytes.value()),
                        bytes.value().len() as u64,
                    ),
                    None => return Err(StoreError::NotFound(id)),
                };
                let mut record = match decoded {
                    Ok(record) => record,
                    Err(e) => {
                        drop(records);
                        txn.abort().map_err(backend)?;
                        quarantine_session(db, id.as_str(), &e)?;
                        return Err(StoreError::NotFound(id));
                    }
                };
                record.apply(&update);
                let bytes = encode(&record, format_args!("session {id}"))?;
                records
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                let (mut added, mut removed) = (bytes.len() as u64, old_len);
                let mut log = txn.open_table(LOG).map_err(backend)?;
                for entry in &update.entries {
                    added += entry.text.len() as u64;
                    if let Some(old) = log
                        .insert((id.as_str(), entry.seq), entry.text.as_str())
                        .map_err(backend)?
                    {
                        removed += old.value().len() as u64;
                    }
                }
                // Positions are consecutive, so the cap is a bound on the oldest position.
                let keep_from = update.keep_from(record.next_seq.saturating_sub(1));
                if !update.entries.is_empty() && keep_from > 1 {
                    log.retain_in((id.as_str(), 0)..(id.as_str(), keep_from), |_, text| {
                        removed += text.len() as u64;
                        false
                    })
                    .map_err(backend)?;
                }
                drop((records, log));
                charge(&txn, &record.owner, added, removed)?;
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
        self.writing(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            remove_session(&txn, id.as_str())?;
            // A log without its record (none is written so) goes too.
            txn.open_table(LOG)
                .map_err(backend)?
                .retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)
                .map_err(backend)?;
            txn.commit().map_err(backend)
        })
    }

    fn idle_since<'a>(&'a self, before_ms: u64) -> StoreFuture<'a, Vec<SessionId>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(RECORDS).map_err(backend)?;
            let mut idle = Vec::new();
            let mut unreadable = Vec::new();
            for item in table.iter().map_err(backend)? {
                let (key, value) = item.map_err(backend)?;
                // Only the time is needed; one unreadable record does not stop the sweep.
                match serde_json::from_slice::<LastActive>(value.value()) {
                    Ok(record) if record.last_active_ms < before_ms => {
                        if let Some(id) = SessionId::parse(key.value()) {
                            idle.push(id);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => unreadable.push((key.value().to_owned(), e)),
                }
            }
            drop((table, txn));
            for (id, e) in unreadable {
                quarantine_session(db, &id, &e)?;
            }
            idle.sort();
            Ok(idle)
        })
    }

    fn save_task<'a>(&'a self, record: &'a TaskRecord) -> StoreFuture<'a, ()> {
        let bytes = encode(record, format_args!("task {}", record.id));
        let (id, owner) = (record.id.clone(), record.owner.clone());
        self.writing(move |db| {
            let bytes = bytes?;
            let txn = db.begin_write().map_err(backend)?;
            let old = txn
                .open_table(TASKS)
                .map_err(backend)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(backend)?
                .map(|old| old.value().to_vec());
            // A task keeps its owner; one replaced that was unreadable counted for nobody.
            let old_len = old
                .filter(|old| serde_json::from_slice::<Owner>(old).is_ok())
                .map_or(0, |old| old.len() as u64);
            charge(&txn, &owner, bytes.len() as u64, old_len)?;
            txn.commit().map_err(backend)
        })
    }

    fn load_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, Option<TaskRecord>> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TASKS).map_err(backend)?;
            let decoded = match table.get(id.as_str()).map_err(backend)? {
                Some(bytes) => serde_json::from_slice(bytes.value()),
                None => return Ok(None),
            };
            drop((table, txn));
            match decoded {
                Ok(task) => Ok(Some(task)),
                Err(e) => {
                    quarantine_task(db, id.as_str(), &e)?;
                    Ok(None)
                }
            }
        })
    }

    fn delete_task<'a>(&'a self, id: &'a TaskId) -> StoreFuture<'a, ()> {
        let id = id.clone();
        self.writing(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            remove_task(&txn, id.as_str())?;
            txn.commit().map_err(backend)
        })
    }

    fn health(&self) -> Result<(), String> {
        match &*self
            .inner
            .broken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn usage<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, Usage> {
        let owner = owner.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let owned = txn.open_table(OWNED).map_err(backend)?;
            let sessions = owned
                .range((owner.as_str(), "")..(owner.as_str(), "\u{10ffff}"))
                .map_err(backend)?
                .count();
            let bytes = txn
                .open_table(OWNER_BYTES)
                .map_err(backend)?
                .get(owner.as_str())
                .map_err(backend)?
                .map_or(0, |n| n.value());
            Ok(Usage { sessions, bytes })
        })
    }

    fn tasks<'a>(&'a self) -> StoreFuture<'a, Vec<TaskRecord>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TASKS).map_err(backend)?;
            let mut tasks = Vec::new();
            let mut unreadable = Vec::new();
            for item in table.iter().map_err(backend)? {
                let (key, value) = item.map_err(backend)?;
                match serde_json::from_slice(value.value()) {
                    Ok(task) => tasks.push(task),
                    // One unreadable record does not hide the others.
                    Err(e) => unreadable.push((key.value().to_owned(), e)),
                }
            }
            drop((table, txn));
            for (id, e) in unreadable {
                quarantine_task(db, &id, &e)?;
            }
            Ok(tasks)
        })
    }
}

/// Who owns a record.
#[derive(serde::Deserialize)]
struct Owner {
    owner: String,
}

/// What the idle sweep reads of a record.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastActive {
    last_active_ms: u64,
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

    /// Issue 19, item 1: one unreadable record (here nested deeper than serde_json reads)
    /// is set aside; it stops neither the sweep nor the listing of tasks, and is never
    /// written in the first place by the store itself.
    #[tokio::test]
    async fn an_unreadable_record_is_quarantined_and_stops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("sessions.redb")).unwrap();
        let good = SessionId::random().unwrap();
        store
            .create(&SessionRecord::new(good.clone(), "a", None, 1))
            .await
            .unwrap();
        let bad = SessionId::random().unwrap();
        let bad_task = TaskId::random().unwrap();
        let poison = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let db = store.inner.db.read().unwrap().clone().unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(RECORDS)
            .unwrap()
            .insert(bad.as_str(), poison.as_bytes())
            .unwrap();
        txn.open_table(LOG)
            .unwrap()
            .insert((bad.as_str(), 1), "{}")
            .unwrap();
        txn.open_table(TASKS)
            .unwrap()
            .insert(bad_task.as_str(), poison.as_bytes())
            .unwrap();
        txn.commit().unwrap();

        assert_eq!(
            store.idle_since(u64::MAX).await.unwrap(),
            vec![good.clone()]
        );
        assert_eq!(store.load(&bad).await.unwrap(), None, "gone");
        assert!(store.tasks().await.unwrap().is_empty());
        assert_eq!(store.load_task(&bad_task).await.unwrap(), None);
        let txn = db.begin_read().unwrap();
        let quarantine = txn.open_table(QUARANTINE).unwrap();
        let kept = quarantine.get(format!("session:{bad}").as_str()).unwrap();
        assert_eq!(kept.unwrap().value(), poison.as_bytes());
        assert!(
            quarantine
                .get(format!("task:{bad_task}").as_str())
                .unwrap()
                .is_some()
        );
        let log = txn.open_table(LOG).unwrap();
        assert!(
            log.get((bad.as_str(), 1)).unwrap().is_none(),
            "its log went too"
        );
        drop((quarantine, log, txn));

        // What the store writes always reads back.
        let mut deep = SessionRecord::new(SessionId::random().unwrap(), "a", None, 1);
        deep.history.push(mcp_session::HistoryEntry {
            tool: "add".to_owned(),
            arguments: serde_json::from_str(&poison[90..310]).unwrap(),
            result: serde_json::Value::Null,
            at_ms: 1,
        });
        let error = store.create(&deep).await.unwrap_err();
        assert!(error.to_string().contains("cannot read back"), "{error}");
        assert_eq!(store.load(&deep.id).await.unwrap(), None);
    }

    /// A store written before the owner index and byte counts existed gets them at its next
    /// opening, the same as the writes kept them.
    #[tokio::test]
    async fn the_owner_index_and_byte_counts_are_made_from_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        let store = RedbStore::open(&path).unwrap();
        for owner in ["alice", "alice", "bob"] {
            let id = SessionId::random().unwrap();
            store
                .create(&SessionRecord::new(id.clone(), owner, None, 1))
                .await
                .unwrap();
            let update = Update {
                entries: vec![LogEntry {
                    seq: 1,
                    text: format!("{{\"to\":\"{owner}\"}}"),
                }],
                log_cap: 10,
                ..Update::default()
            };
            store.update(&id, &update).await.unwrap();
        }
        let mut task = serde_json::from_value::<TaskRecord>(serde_json::json!({
            "id": TaskId::random().unwrap(), "owner": "bob", "tool": "sleep",
            "arguments": {"ms": 5}, "status": "working", "createdMs": 1, "updatedMs": 1,
            "ttlMs": 1000, "pollIntervalMs": 100
        }))
        .unwrap();
        store.save_task(&task).await.unwrap();
        task.status_message = Some("halfway".to_owned());
        store.save_task(&task).await.unwrap();
        let (alice, bob) = (
            store.usage("alice").await.unwrap(),
            store.usage("bob").await.unwrap(),
        );
        assert_eq!(alice.sessions, 2);
        assert_eq!(bob.sessions, 1);
        assert!(bob.bytes > mcp_session::stored_len(&task), "{bob:?}");

        let db = store.inner.db.read().unwrap().clone().unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(OWNED).unwrap();
        txn.delete_table(OWNER_BYTES).unwrap();
        txn.commit().unwrap();
        drop(db);
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.usage("alice").await.unwrap(), alice);
        assert_eq!(store.usage("bob").await.unwrap(), bob);
        assert_eq!(store.usage("carol").await.unwrap(), Usage::default());
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
