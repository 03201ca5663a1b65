//! [`MemoryStore`]: objects in a map in this process, for tests and as the model the other
//! backends are held to.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::args::{check_get, check_key, cut_usize};
use crate::{ExternalStore, ExternalStoreHandle, RemoteError};

/// An [`ExternalStore`] in memory. Clones share the same objects; nothing survives the process.
#[derive(Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<HashMap<String, Bytes>>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> MutexGuard<'_, HashMap<String, Bytes>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one insert or remove.
        self.objects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ExternalStore for MemoryStore {
    fn connect(&self) -> Result<Box<dyn ExternalStoreHandle>, RemoteError> {
        Ok(Box::new(self.clone()))
    }
}

impl ExternalStoreHandle for MemoryStore {
    fn put(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        check_key(key)?;
        self.objects().insert(key.to_owned(), bytes);
        Ok(())
    }

    fn get(&mut self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, RemoteError> {
        check_get(key, &range)?;
        Ok(self.objects().get(key).map(|object| object.slice(cut_usize(&range, object.len()))))
    }

    fn delete(&mut self, key: &str) -> Result<(), RemoteError> {
        check_key(key)?;
        self.objects().remove(key);
        Ok(())
    }

    fn put_if_absent(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        check_key(key)?;
        match self.objects().entry(key.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(RemoteError::AlreadyExists),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(bytes);
                Ok(())
            }
        }
    }
}
