//! The core of the service, free of Kubernetes and gRPC types: what a deployment asks for
//! ([`spec`]), how it is checked ([`validate`], [`image`], [`names`]), and what a pod's status
//! means ([`status`]). The Kubernetes adapter (`k8s`) and the gRPC layer (`grpc`) convert to and
//! from these types at their edges.

pub mod caller;
pub mod deployment;
pub mod image;
pub mod names;
pub mod rollout;
pub mod selector;
pub mod spec;
pub mod status;
pub mod validate;
pub mod workload;

pub use caller::{Caller, Credential};
pub use image::ImageReference;
pub use selector::LabelSelector;
pub use spec::{DeployInput, DeploySpec, WaitFor};
pub use status::{Assessment, Health, ObjectEvent, ObjectKind, PodState, Reason};
pub use validate::{FieldViolation, Violations};
pub use workload::Workload;

/// The label every pod created by this service carries, and its value.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "k8s-deployer");
/// Label carrying the Deploy request_id, when one was given.
pub const REQUEST_ID_LABEL: &str = "k8s-deployer.io/request-id";
/// Annotation carrying the image reference as requested.
pub const IMAGE_ANNOTATION: &str = "k8s-deployer.io/image";
/// Annotation carrying a hash of the request, to tell a retry from a different request that
/// reuses the same request_id.
pub const REQUEST_HASH_ANNOTATION: &str = "k8s-deployer.io/request-hash";
/// Annotation carrying the Pod Security profile the pod was hardened to.
pub const POD_SECURITY_ANNOTATION: &str = "k8s-deployer.io/pod-security";
/// Prefix of the label and annotation keys this service reserves for itself.
pub const RESERVED_PREFIX: &str = "k8s-deployer.io/";
/// Name of the one container of every pod this service creates.
pub const CONTAINER_NAME: &str = "app";
