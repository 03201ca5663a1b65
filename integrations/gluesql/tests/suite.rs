//! GlueSQL's own test suite (`gluesql-test-suite`) on Helio: every group whose traits
//! `HelioStorage` implements, each test in a store of its own in a temporary directory.

use gluesql_core::prelude::Glue;
use gluesql_test_suite::*;
use helio_gluesql::HelioStorage;
use tempfile::TempDir;

/// A GlueSQL database on a fresh Helio store; the directory goes when the tester does.
struct HelioTester {
    // Declared first: the store closes before its directory is removed.
    glue: Glue<HelioStorage>,
    _dir: TempDir,
}

impl Tester<HelioStorage> for HelioTester {
    fn new(namespace: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(namespace).tempdir().expect("temporary directory");
        let storage = HelioStorage::open(dir.path()).expect("open a Helio store");
        Self { glue: Glue::new(storage), _dir: dir }
    }

    fn get_glue(&mut self) -> &mut Glue<HelioStorage> {
        &mut self.glue
    }
}

generate_store_tests!(test, HelioTester);
generate_alter_table_tests!(test, HelioTester);
generate_transaction_tests!(test, HelioTester);
generate_index_tests!(test, HelioTester);
generate_alter_table_index_tests!(test, HelioTester);
generate_transaction_alter_table_tests!(test, HelioTester);
generate_transaction_index_tests!(test, HelioTester);
generate_metadata_table_tests!(test, HelioTester);
generate_metadata_index_tests!(test, HelioTester);
generate_custom_function_tests!(test, HelioTester);
