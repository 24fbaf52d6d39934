//! The immutable health view the query path reads through `arc-swap`.

use serde::Serialize;

/// The steering-relevant state of one member.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemberHealth {
    /// Up and accepting new clients (not down, not draining).
    pub usable: bool,
    /// Probability in 0..=1 that a given client is steered away (load shedding).
    pub shed: f32,
    /// May be answered when nothing in the pool is usable (the fail-open
    /// policy): a member from the configuration, or a registered one that
    /// has been probed up at least once. A registered relay never seen up may
    /// not be listening yet, so it gets no clients even then.
    pub fail_open: bool,
}

impl MemberHealth {
    /// Healthy, not shedding.
    pub const UP: MemberHealth = MemberHealth {
        usable: true,
        shed: 0.0,
        fail_open: true,
    };
}

/// Health of every member, indexed like [`crate::steer::Steering::members`].
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    /// Bumped on every change.
    pub epoch: u64,
    /// The [`crate::dns::ServeState::generation`] whose member ids index
    /// `members`: a snapshot is only read together with that state.
    pub generation: u64,
    /// Per-member state.
    pub members: Vec<MemberHealth>,
    /// Per-pool epoch: bumped when a member of that pool changes, so cached
    /// answers of other pools (and static data) stay valid.
    pub pool_epochs: Vec<u64>,
}

impl HealthSnapshot {
    /// Every member up (the state before any probe, and when none is configured).
    pub fn all_up(members: usize, epoch: u64) -> Self {
        Self {
            epoch,
            generation: 0,
            members: vec![MemberHealth::UP; members],
            pool_epochs: Vec::new(),
        }
    }

    /// State of member `id` (up when unknown).
    #[inline]
    pub fn get(&self, id: u32) -> MemberHealth {
        self.members
            .get(id as usize)
            .copied()
            .unwrap_or(MemberHealth::UP)
    }

    /// Epoch of pool `p` (0 when unknown).
    #[inline]
    pub fn pool_epoch(&self, p: u16) -> u64 {
        self.pool_epochs.get(p as usize).copied().unwrap_or(0)
    }

    /// Whether any member is shedding (answers then depend on the client hash).
    pub fn any_shedding(&self) -> bool {
        self.members.iter().any(|m| m.shed > 0.0)
    }
}
