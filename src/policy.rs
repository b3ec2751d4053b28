//! Authorization: what a caller may do, and which images may run.
