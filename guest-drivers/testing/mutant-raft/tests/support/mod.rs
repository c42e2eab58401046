//! Shared by the mutant copies' simulation tests (`mutant-raft` and, through
//! `#[path]`, `mutant-paxos`): a driver type per mutant, the check that the
//! SDK's contract tests catch it, and the scenarios the contract suite does
//! not play but the host does ([`scenario`]).

/// `$name`: the driver `$inner` (a mutant copy's core) with the option
/// `mutant=$value` added to every instance's config, claiming what
/// `$inner` claims to the simulator (a mutant lies about its leases).
macro_rules! mutant {
    ($name:ident = $inner:ty, $value:literal) => {
        struct $name($inner);

        impl ::tsohost_guest_sdk::Driver for $name {
            const NAME: &'static str = <$inner as ::tsohost_guest_sdk::Driver>::NAME;

            fn init(
                host: ::std::rc::Rc<dyn ::tsohost_guest_sdk::port::Host>,
                cfg: &::tsohost_guest_sdk::Config,
            ) -> Result<Self, ::tsohost_guest_sdk::DriverError> {
                let mut cfg = cfg.clone();
                cfg.options.push(("mutant".into(), $value.into()));
                <$inner as ::tsohost_guest_sdk::Driver>::init(host, &cfg).map($name)
            }

            fn on_message(&mut self, from: ::tsohost_guest_sdk::NodeId, payload: &[u8]) {
                self.0.on_message(from, payload)
            }

            fn on_tick(&mut self, now_ms: u64) -> u64 {
                self.0.on_tick(now_ms)
            }

            fn load_high_water(&mut self, request: u64) {
                self.0.load_high_water(request)
            }

            fn persist_high_water(
                &mut self,
                request: u64,
                at_least: u64,
                epoch: ::tsohost_guest_sdk::Epoch,
            ) {
                self.0.persist_high_water(request, at_least, epoch)
            }

            fn change_membership(&mut self, request: u64, members: &[::tsohost_guest_sdk::Peer]) {
                self.0.change_membership(request, members)
            }

            fn transfer_leadership(
                &mut self,
                request: u64,
                to: Option<::tsohost_guest_sdk::NodeId>,
            ) {
                self.0.transfer_leadership(request, to)
            }
        }

        impl ::tsohost_guest_sdk::sim::SimDriver for $name {
            const MAX_LEASE_MS: u64 = <$inner as ::tsohost_guest_sdk::sim::SimDriver>::MAX_LEASE_MS;
            const HONOURS_EVERY_LEASE: bool =
                <$inner as ::tsohost_guest_sdk::sim::SimDriver>::HONOURS_EVERY_LEASE;

            fn applied_high_water(&self) -> u64 {
                ::tsohost_guest_sdk::sim::SimDriver::applied_high_water(&self.0)
            }
        }
    };
}
pub(crate) use mutant;

/// Assert that the mutant `$driver` fails each of the scenarios named: the
/// SDK's contract tests (`contract::name`, from
/// `tsohost_guest_sdk::sim::contract`) or those of [`scenario`]
/// (`scenario::name`).
macro_rules! caught_by {
    ($driver:ty: $($module:ident::$test:ident),+ $(,)?) => {
        $crate::support::assert_all_fail(
            stringify!($driver),
            &[$((
                concat!(stringify!($module), "::", stringify!($test)),
                $module::$test::<$driver> as fn(),
            )),+],
        )
    };
}
pub(crate) use caught_by;

/// Run `test`; the message it panicked with, `None` if it passed.
pub fn failure(test: fn()) -> Option<String> {
    match std::panic::catch_unwind(test) {
        Ok(()) => None,
        Err(e) => Some(
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(a panic without a message)".into()),
        ),
    }
}

/// Assert that every test of `tests` fails for `mutant`; print why each did.
pub fn assert_all_fail(mutant: &str, tests: &[(&str, fn())]) {
    let mut passed = Vec::new();
    for (name, test) in tests {
        match failure(*test) {
            Some(why) => eprintln!("{mutant}: {name} fails, as it must: {why}"),
            None => passed.push(*name),
        }
    }
    assert!(
        passed.is_empty(),
        "{mutant} passes {passed:?}: the mutation does not break what it claims to"
    );
}

/// Scenarios for rules the SDK's contract suite states but does not
/// exercise in the way a mutant breaks them; both follow what the host does
/// and each real driver passes them (the copies run them without a mutant).
pub mod scenario {
    use tsohost_guest_sdk::Role;
    use tsohost_guest_sdk::sim::SimDriver;
    use tsohost_guest_sdk::sim::cluster::SimCluster;

    /// The host loads the high water at the first report that names its node
    /// leader in a new epoch, before any lease (`node/term.rs`). That load
    /// must reflect every persist completed before it, even one the cluster
    /// had not told the new leader about: here the old leader is cut off the
    /// moment its last persist completes, before it can tell its followers
    /// that the entry is committed or decided.
    pub fn a_new_leaders_first_load_sees_every_completed_persist<D: SimDriver>() {
        let mut c = SimCluster::<D>::new(&[1, 2, 3], &[]);
        let (old, r) = c.wait_leader();
        assert_eq!(c.persist(old, 10, r.epoch), Ok(10));
        assert_eq!(c.persist(old, 20, r.epoch), Ok(20));
        c.isolated.insert(old);
        let newer = |c: &SimCluster<D>| {
            c.ids.iter().copied().find(|&id| {
                id != old
                    && c.last_report(id)
                        .is_some_and(|n| n.role == Role::Leader && n.epoch > r.epoch)
            })
        };
        c.run_until(20_000, |c| newer(c).is_some());
        let new = newer(&c).expect("a new leader");
        let loaded = c.load(new).expect("the new leader loads");
        assert!(
            loaded >= 20,
            "node {new}, the new leader, loads {loaded}; 20 was persisted before it was elected"
        );
    }

    /// A leader that hands over (`transfer-leadership`) and is cut off at
    /// once, so that it never hears of its successor, must not serve beside
    /// it: it stops serving in the call, before any hand-over message can
    /// help the successor win (as the host models serving).
    pub fn a_leader_cut_off_as_it_hands_over_never_serves_beside_its_successor<D: SimDriver>() {
        let mut c = SimCluster::<D>::new(&[1, 2, 3], &[]);
        let (old, r) = c.wait_leader();
        assert_eq!(c.persist(old, 10, r.epoch), Ok(10));
        let to = c.ids.iter().copied().find(|&id| id != old).unwrap();
        c.request(old, |d, req| d.transfer_leadership(req, Some(to)));
        c.step();
        c.isolated.insert(old);
        let (new, nr) = c.wait_leader();
        assert_ne!(new, old);
        assert!(nr.epoch > r.epoch);
        c.run_for(2_000);
        c.assert_single_serving_leader_host_model();
    }
}
