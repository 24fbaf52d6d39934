//! Member health as seen by the steering core.
//!
//! The hot path reads an immutable [`HealthSnapshot`] through `arc-swap`;
//! probers (a later stage) publish a new snapshot whenever a member's state
//! changes, bumping `epoch` so cached answers built on the old one are not used.

use serde::Serialize;

/// The steering-relevant state of one member.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemberHealth {
    /// Up and accepting new clients (not down, not draining).
    pub usable: bool,
    /// Probability in 0..=1 that a given client is steered away (load shedding).
    pub shed: f32,
}

impl MemberHealth {
    /// Healthy, not shedding.
    pub const UP: MemberHealth = MemberHealth {
        usable: true,
        shed: 0.0,
    };
}

/// Health of every member, indexed like [`crate::steer::Steering::members`].
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    /// Bumped on every change; part of the answer cache's validity check.
    pub epoch: u64,
    /// Per-member state.
    pub members: Vec<MemberHealth>,
}

impl HealthSnapshot {
    /// Every member up (the state before any probe, and when none is configured).
    pub fn all_up(members: usize, epoch: u64) -> Self {
        Self {
            epoch,
            members: vec![MemberHealth::UP; members],
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
}
