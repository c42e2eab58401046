//! The SDK's contract suite (`tsohost_guest_sdk::sim::contract`) on the file
//! driver: the single-node part (the replicated one does not apply).

use tsohost_driver_file::FileDriver;

tsohost_guest_sdk::contract_suite!(single_node: FileDriver);
