//! geosteer regional STUN/TURN relay (see issue: relay).
