//! k8s-deployer: a gRPC service that deploys container images to Kubernetes as
//! pods and streams their status.
//!
//! The crate is a library with a thin binary (`src/main.rs`). The library is
//! organised by role:
//!
//! - [`config`]: command-line flags and their environment twins;
//! - [`telemetry`]: tracing setup, plain or JSON output;
//! - [`error`]: the per-call error and its mapping to gRPC status codes, and the start-up
//!   error;
//! - [`proto`]: the generated code of the public protobuf contract;
//! - [`domain`]: what a deployment asks for and what a pod's status means, free of
//!   Kubernetes and gRPC types;
//! - [`k8s`]: the Kubernetes adapter (client, pod builder, conversions, namespace watches);
//! - [`hub`]: the status hub, one owner of each namespace's state, fanning out to
//!   subscribers;
//! - [`grpc`]: the `deployer.v1.DeployerService` implementation;
//! - [`auth`]: who is calling: bearer tokens (JWT, JWKS), client certificates, and the
//!   layer that authenticates every request;
//! - [`policy`]: what a caller may do where, and which images may run (the policy file);
//! - [`audit`]: one audit record per call, to its own sink;
//! - [`http`]: the prototype's HTTP API, an adapter over the gRPC service;
//! - [`server`]: bootstrap, TLS, health, reflection and graceful shutdown.
//!
//! Integration tests start the server in-process:
//!
//! ```no_run
//! # async fn example() -> Result<(), k8s_deployer::StartupError> {
//! use k8s_deployer::{Config, Server};
//!
//! let config = Config {
//!     listen: "127.0.0.1:0".parse().expect("valid address"),
//!     plaintext: true,
//!     policy: Some("policy.yaml".into()),
//!     jwks_file: Some("jwks.json".into()),
//!     jwt_issuer: Some("https://issuer.example".into()),
//!     jwt_audiences: vec!["k8s-deployer".into()],
//!     ..Config::default()
//! };
//! let server = Server::bind(&config).await?;
//! let addr = server.local_addr();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(server.run(async {
//!     let _ = stopped.await;
//! }));
//! // ... talk to `addr` with a gRPC client, then:
//! let _ = stop.send(());
//! # let _ = (addr, running);
//! # Ok(())
//! # }
//! ```

pub mod audit;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod k8s;
pub mod policy;
pub mod proto;
pub mod server;
pub mod telemetry;

pub use config::Config;
pub use error::{Error, Result, StartupError};
pub use server::Server;
