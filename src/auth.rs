//! Authentication: who is calling.
