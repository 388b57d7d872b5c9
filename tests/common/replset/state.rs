//! The replica set's shared state and its transitions: roles, elections, topology versions
//! and per-member counters. Pure data behind one mutex; nothing here touches a socket.
//!
//! Every transition that changes what a member would say in hello bumps that member's
//! `topologyVersion.counter`, which is what wakes awaitable hellos (the SDAM monitoring
//! spec's "significant topology change").

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bson::oid::ObjectId;

/// The replica set name every member reports.
pub const SET_NAME: &str = "rs0";

/// The first `setVersion`. It starts above 1 so that a stale member can claim an older one.
pub const INITIAL_SET_VERSION: i32 = 2;

/// What a member believes about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Secondary,
    /// Claims to be primary with an outdated election: SDAM must ignore it.
    StalePrimary {
        term: u32,
        set_version: i32,
    },
}

/// Counters for one member, cumulative over restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStats {
    /// Commands sent on to the shared SecantusDB, by command name as the client spelled it.
    pub forwarded: BTreeMap<String, u64>,
    /// Commands answered with an error by the role rules, by error code (10107, 13435,
    /// 11602).
    pub rejected: BTreeMap<i32, u64>,
    /// hello / isMaster replies sent (each streamed reply counts).
    pub hellos: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// The `maxTimeMS` of the last forwarded command that carried one, by command name.
    pub max_time_ms: BTreeMap<String, i64>,
}

impl MemberStats {
    pub fn forwarded(&self, command: &str) -> u64 {
        self.forwarded.get(command).copied().unwrap_or(0)
    }

    pub fn forwarded_total(&self) -> u64 {
        self.forwarded.values().sum()
    }

    pub fn rejected(&self, code: i32) -> u64 {
        self.rejected.get(&code).copied().unwrap_or(0)
    }
}

/// One member's state.
#[derive(Debug, Clone)]
pub struct MemberState {
    pub role: Role,
    pub process_id: ObjectId,
    pub counter: i64,
    /// False between `kill` and `restart`.
    pub up: bool,
    pub partitioned: bool,
    /// Held before each forwarded command, so tests can overlap commands with transitions.
    pub latency: Duration,
    /// How far behind "now" its `lastWrite.lastWriteDate` is.
    pub lag: Duration,
    /// Commands admitted for forwarding and not answered yet (held, or at SecantusDB).
    pub in_flight: u64,
    /// Bumped whenever the member stops being primary; a command admitted as primary that
    /// sees it change was in flight at a step-down.
    pub primary_epoch: u64,
    /// The election term and setVersion of its last term as primary.
    pub last_term: Option<(u32, i32)>,
    pub stats: MemberStats,
}

impl MemberState {
    fn new(role: Role) -> Self {
        Self {
            role,
            process_id: ObjectId::new(),
            counter: 0,
            up: true,
            partitioned: false,
            latency: Duration::ZERO,
            lag: Duration::ZERO,
            in_flight: 0,
            primary_epoch: 0,
            last_term: None,
            stats: MemberStats::default(),
        }
    }

    pub fn topology_version(&self) -> (ObjectId, i64) {
        (self.process_id, self.counter)
    }

    /// Whether it accepts writes, as it believes.
    pub fn acts_as_primary(&self) -> bool {
        matches!(self.role, Role::Primary | Role::StalePrimary { .. })
    }
}

/// Everything a member needs to answer hello, copied out of the lock.
#[derive(Debug, Clone)]
pub struct HelloView {
    pub hosts: Vec<String>,
    pub me: String,
    pub primary: Option<String>,
    pub writable: bool,
    pub secondary: bool,
    pub set_version: i32,
    pub election_id: Option<ObjectId>,
    pub topology_version: (ObjectId, i64),
    pub term: u32,
    pub lag: Duration,
}

/// The whole set.
#[derive(Debug)]
pub struct SetState {
    pub members: Vec<MemberState>,
    pub hosts: Vec<String>,
    /// The real primary, if any.
    pub primary: Option<usize>,
    /// Elections held so far; the current primary's electionId encodes it.
    pub term: u32,
    pub set_version: i32,
    pub next_connection_id: i64,
    /// Open cursors by id: the member that opened them, or `None` once it was killed.
    pub cursors: HashMap<i64, Option<usize>>,
}

/// mongod's electionId layout: a fixed prefix, then the term, so ids order by term.
pub fn election_id(term: u32) -> ObjectId {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    b[8..].copy_from_slice(&term.to_be_bytes());
    ObjectId::from_bytes(b)
}

impl SetState {
    /// A set whose member 0 has just won the first election.
    pub fn new(hosts: Vec<String>) -> Self {
        let mut members: Vec<MemberState> = (0..hosts.len())
            .map(|_| MemberState::new(Role::Secondary))
            .collect();
        members[0].role = Role::Primary;
        members[0].last_term = Some((1, INITIAL_SET_VERSION));
        Self {
            members,
            hosts,
            primary: Some(0),
            term: 1,
            set_version: INITIAL_SET_VERSION,
            next_connection_id: 1,
            cursors: HashMap::new(),
        }
    }

    pub fn member(&self, i: usize) -> &MemberState {
        self.members.get(i).unwrap_or_else(|| {
            panic!(
                "the set has {} members; there is no member {i}",
                self.members.len()
            )
        })
    }

    pub fn member_mut(&mut self, i: usize) -> &mut MemberState {
        let n = self.members.len();
        self.members
            .get_mut(i)
            .unwrap_or_else(|| panic!("the set has {n} members; there is no member {i}"))
    }

    fn bump_all(&mut self) {
        for m in &mut self.members {
            m.counter += 1;
        }
    }

    fn demote(&mut self, i: usize) {
        let m = self.member_mut(i);
        if m.acts_as_primary() {
            m.primary_epoch += 1;
        }
        m.role = Role::Secondary;
    }

    /// The primary steps down; the set has no primary until [`SetState::elect`].
    pub fn step_down(&mut self, i: usize) {
        assert_eq!(
            self.primary,
            Some(i),
            "step_down({i}): member {i} is not the primary"
        );
        self.demote(i);
        self.primary = None;
        self.bump_all();
    }

    /// Member `j` wins a new election; every other member becomes a secondary.
    pub fn elect(&mut self, j: usize) {
        assert!(self.member(j).up, "elect({j}): member {j} is down");
        self.term += 1;
        for i in 0..self.members.len() {
            self.demote(i);
        }
        let (term, set_version) = (self.term, self.set_version);
        let m = self.member_mut(j);
        m.role = Role::Primary;
        m.last_term = Some((term, set_version));
        self.primary = Some(j);
        self.bump_all();
    }

    /// A new configuration: every member reports the larger setVersion.
    pub fn reconfig(&mut self) {
        self.set_version += 1;
        if let Some(p) = self.primary {
            let (term, set_version) = (self.term, self.set_version);
            self.member_mut(p).last_term = Some((term, set_version));
        }
        self.bump_all();
    }

    /// Member `i` claims to be primary with an election older than the current one.
    pub fn bring_back_stale_primary(&mut self, i: usize) {
        let p = self.primary.unwrap_or_else(|| {
            panic!("bring_back_stale_primary({i}): there is no real primary to be stale against")
        });
        assert_ne!(
            p, i,
            "bring_back_stale_primary({i}): member {i} is the real primary"
        );
        let (term, set_version) = (self.term, self.set_version);
        let m = self.member_mut(i);
        let (old_term, old_version) = m
            .last_term
            .filter(|&(t, _)| t < term)
            .unwrap_or((term - 1, set_version - 1));
        m.role = Role::StalePrimary {
            term: old_term,
            set_version: old_version.min(set_version - 1),
        };
        m.counter += 1;
    }

    /// Its process dies, and its cursors with it.
    pub fn kill(&mut self, i: usize) {
        self.member_mut(i).up = false;
        for owner in self.cursors.values_mut() {
            if *owner == Some(i) {
                *owner = None;
            }
        }
    }

    /// Whether member `i` may continue cursor `id`: it opened it, or the harness never saw
    /// it opened (e.g. a command it does not parse).
    pub fn cursor_here(&self, id: i64, i: usize) -> bool {
        self.cursors.get(&id).is_none_or(|&owner| owner == Some(i))
    }

    /// A reply from member `i` left cursor `id` open (or, for 0, nothing to track).
    pub fn note_cursor(&mut self, id: i64, i: usize) {
        if id != 0 {
            self.cursors.insert(id, Some(i));
        }
    }

    /// Back up as a secondary with a new processId. If it was the primary, the set has no
    /// primary any more and every member says so.
    pub fn restart(&mut self, i: usize) {
        self.demote(i);
        let m = self.member_mut(i);
        m.up = true;
        m.partitioned = false;
        m.process_id = ObjectId::new();
        m.counter = 0;
        if self.primary == Some(i) {
            self.primary = None;
            self.bump_all();
        }
    }

    pub fn hello_view(&self, i: usize) -> HelloView {
        let m = self.member(i);
        let me = self.hosts[i].clone();
        let (writable, election, set_version, primary) = match m.role {
            Role::Primary => (
                true,
                Some(election_id(self.term)),
                self.set_version,
                Some(me.clone()),
            ),
            Role::StalePrimary { term, set_version } => {
                (true, Some(election_id(term)), set_version, Some(me.clone()))
            }
            Role::Secondary => (
                false,
                None,
                self.set_version,
                self.primary.map(|p| self.hosts[p].clone()),
            ),
        };
        HelloView {
            hosts: self.hosts.clone(),
            me,
            primary,
            writable,
            secondary: !writable,
            set_version,
            election_id: election,
            topology_version: m.topology_version(),
            term: self.term,
            lag: m.lag,
        }
    }
}
