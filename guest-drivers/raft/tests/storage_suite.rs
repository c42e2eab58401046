//! openraft's own storage test suite against the driver's log store and
//! state machine, over in-memory host storage.

use std::rc::Rc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft_rt::AsyncRuntime;
use tsohost_driver_raft::store::{LogStore, StateMachine, Storage};
use tsohost_driver_raft::types::TypeConfig;
use tsohost_guest_sdk::runtime::GuestRuntime;
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine> for Builder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<TypeConfig>> {
        let host = Rc::new(SimHost::new(0, MemStorage::default(), SimClock::default()));
        let st = Storage::open(host).expect("open storage");
        let sm = StateMachine::open(st.clone()).expect("open state machine");
        Ok(((), LogStore::new(st), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    GuestRuntime::new(1).block_on(async {
        Suite::test_all(Builder).await.expect("storage suite");
    });
}
