//! Generated code of the public protobuf contract
//! (`proto/deployer/v1/deployer.proto`).
//!
//! This is the only module that includes generated code; the rest of the
//! crate converts to and from these types at the gRPC boundary.

/// The `deployer` protobuf package.
pub mod deployer {
    /// Version 1 of the deployer API: the `deployer.v1` protobuf package.
    pub mod v1 {
        #![allow(
            missing_docs,
            unreachable_pub,
            clippy::all,
            clippy::pedantic,
            clippy::nursery
        )]
        tonic::include_proto!("deployer.v1");
    }
}

/// Encoded `FileDescriptorSet` of the contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/deployer_descriptor.bin"));

/// Fully qualified name of the deployer gRPC service, as used by the health
/// service and reflection.
pub const DEPLOYER_SERVICE: &str = deployer::v1::deployer_service_server::SERVICE_NAME;

/// Fully qualified name of the Deployment gRPC service, as used by the health service.
pub const DEPLOYMENT_SERVICE: &str = deployer::v1::deployment_service_server::SERVICE_NAME;
