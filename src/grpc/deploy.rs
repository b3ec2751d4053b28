//! Deploy: validate, honour the request_id, create, and optionally wait like `kubectl wait`
//! done on the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::spec::{DeploySpec, PodSecurityProfile, resolve_profile};
use crate::domain::validate::validate_deploy;
use crate::domain::{Caller, DeployInput, ImageReference, PodState, WaitFor};
use crate::grpc::DeployerService;
use crate::grpc::convert::{health_name, reason_name};
use crate::grpc::deadline::{DEADLINE_MARGIN, RETRY, RETRY_CREATE, bounded, call_limit};
use crate::hub::{Filter, PodView, Subscription, Update};
use crate::policy::{Action, ImageRefusalKind};
use crate::proto::deployer::v1 as pb;
use crate::{Error, Result};

/// How many generated names Deploy tries when one is taken.
const NAME_ATTEMPTS: usize = 3;

impl DeployerService {
    pub(super) async fn deploy(
        &self,
        caller: &Caller,
        request: pb::DeployRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::DeployResponse> {
        let input = DeployInput::try_from(request).map_err(Error::InvalidRequest)?;
        let mut spec = validate_deploy(&input).map_err(Error::InvalidRequest)?;
        self.admit_pods(caller, Action::Deploy, &spec)?;

        // Everything that waits on the API server is bounded by the call's limit; the wait
        // for the pod's state that may follow has its own (wait_timeout, the deadline).
        let limit = call_limit(deadline, self.settings.call_timeout);
        // Whether a create reached the wire: only then may a timed-out call have created a pod.
        let create_sent = AtomicBool::new(false);
        let placed = bounded(
            limit,
            RETRY_CREATE,
            self.place(&input, &mut spec, &create_sent),
        )
        .await
        .map_err(|error| match error {
            Error::CallTimedOut { after, .. } if !create_sent.load(Ordering::Relaxed) => {
                Error::CallTimedOut {
                    after,
                    retry: RETRY,
                }
            }
            error => error,
        })?;
        self.finish(&spec, placed, deadline).await
    }

    /// What every request that makes pods (a pod, or a Deployment's template) passes before
    /// anything reaches the API server: the namespace is served, the caller may do `action`
    /// there, the policy lets it reference every Secret, ConfigMap and ServiceAccount the pods
    /// would, the image policy allows the image, and the Pod Security profile asked for is not
    /// below the operator's floor.
    pub(super) fn admit_pods(
        &self,
        caller: &Caller,
        action: Action,
        spec: &DeploySpec,
    ) -> Result<()> {
        self.check_namespace(&spec.namespace)?;
        self.authorize(caller, action, &spec.namespace)?;
        self.check_references(caller, action, spec)?;
        self.check_image(&spec.image)?;
        self.profile_for(spec, None).map(drop)
    }

    /// Refuse references the policy does not allow: anyone who may create a pod could read
    /// any Secret of its namespace through it. Every refused reference is listed, each after
    /// the field that makes it.
    fn check_references(&self, caller: &Caller, action: Action, spec: &DeploySpec) -> Result<()> {
        let refused: Vec<String> = spec
            .references()
            .into_iter()
            .filter_map(|reference| {
                self.policy
                    .check_reference(
                        caller,
                        action,
                        &spec.namespace,
                        reference.kind,
                        &reference.name,
                    )
                    .err()
                    .map(|denied| format!("{}: {denied}", reference.field))
            })
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(Error::Forbidden(refused.join("; ")))
        }
    }

    /// The Pod Security profile the pods of `spec` get in a namespace that enforces
    /// `enforced`; PERMISSION_DENIED when the request asks for less than the floor (the
    /// server's default and the policy file's setting for the namespace).
    pub(super) fn profile_for(
        &self,
        spec: &DeploySpec,
        enforced: Option<&str>,
    ) -> Result<PodSecurityProfile> {
        let requested = spec.pod_security;
        let namespace = &spec.namespace;
        resolve_profile(
            requested,
            self.settings.pod_security,
            self.policy.pod_security(namespace),
            enforced,
        )
        .map_err(|floor| {
            Error::Forbidden(format!(
                "pod_security: {} is weaker than {}, the least this server allows in \
                     namespace {namespace:?}",
                requested.map_or("unspecified", |p| p.as_str()),
                floor.as_str(),
            ))
        })
    }

    /// The pod of the request: one an earlier attempt created, or a new one; subscribed to
    /// first when the request waits, so that the wait sees every change from the first.
    async fn place(
        &self,
        input: &DeployInput,
        spec: &mut DeploySpec,
        create_sent: &AtomicBool,
    ) -> Result<Placed> {
        if let Some(existing) = self.previous_attempt(spec).await? {
            spec.name.clone_from(&existing.name);
            return self.existing(spec, existing).await;
        }

        // Reading the namespace also tells a missing namespace apart before anything else.
        let enforced = self.pods.pod_security_enforced(&spec.namespace).await?;
        let profile = self.profile_for(spec, enforced.as_deref())?;

        let waiting = spec.wait.is_some() && !spec.dry_run;
        let mut attempt = 1;
        loop {
            let subscription = if waiting {
                Some(self.subscribe(&spec.namespace, &spec.name).await?)
            } else {
                None
            };
            create_sent.store(true, Ordering::Relaxed);
            match self.pods.create(spec, profile).await {
                Ok(created) => {
                    tracing::info!(
                        namespace = %spec.namespace, name = %spec.name, image = %spec.image,
                        pod_security = profile.as_str(), dry_run = spec.dry_run, "pod created"
                    );
                    return Ok(Placed {
                        pod: created,
                        created: !spec.dry_run,
                        subscription,
                    });
                }
                Err(Error::NameTaken { .. }) if spec.request_id.is_some() => {
                    // A concurrent retry of the same request may have won the race.
                    if let Some(existing) = self.previous_attempt(spec).await? {
                        return self.existing(spec, existing).await;
                    }
                    return Err(Error::NameTaken {
                        namespace: spec.namespace.clone(),
                        name: spec.name.clone(),
                    });
                }
                Err(Error::NameTaken { .. }) if spec.generated_name && attempt < NAME_ATTEMPTS => {
                    attempt += 1;
                    *spec = validate_deploy(input).map_err(Error::InvalidRequest)?;
                }
                Err(error) => {
                    if let Error::NamespaceNotFound(namespace)
                    | Error::PodSecurityRejected { namespace, .. } = &error
                    {
                        // Deleted, or relabelled, since it was read: the next call reads it
                        // again rather than trust the cache.
                        self.pods.forget_namespace(namespace);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Refuse images the policy does not allow: a registry or repository outside the allowed
    /// ones is PERMISSION_DENIED; a reference of the wrong form (no digest where one is
    /// required, a denied tag) is FAILED_PRECONDITION.
    fn check_image(&self, image: &ImageReference) -> Result<()> {
        match self.policy.check_image(image) {
            Ok(()) => Ok(()),
            Err(refused) => match refused.kind {
                ImageRefusalKind::NotAllowed => Err(Error::ImageNotAllowed(refused.to_string())),
                ImageRefusalKind::DigestRequired | ImageRefusalKind::TagDenied => {
                    Err(Error::ImageRefused(refused.to_string()))
                }
            },
        }
    }

    /// The pod an earlier attempt of this request created, if any. A request_id reused for
    /// a different request is refused.
    async fn previous_attempt(&self, spec: &DeploySpec) -> Result<Option<PodState>> {
        let Some(request_id) = &spec.request_id else {
            return Ok(None);
        };
        let Some(existing) = self
            .pods
            .find_by_request_id(&spec.namespace, request_id)
            .await?
        else {
            return Ok(None);
        };
        if existing.request_hash.as_deref() != Some(spec.request_hash.as_str()) {
            return Err(Error::RequestIdReused(request_id.clone()));
        }
        Ok(Some(existing))
    }

    async fn subscribe(&self, namespace: &str, name: &str) -> Result<Subscription> {
        self.hub
            .subscribe(namespace, Filter::Name(name.to_owned()))
            .await
            .map_err(|error| super::subscribe_failed(namespace, error))
    }

    /// An existing pod, subscribed to when the request waits.
    async fn existing(&self, spec: &DeploySpec, pod: PodState) -> Result<Placed> {
        let subscription = if spec.wait.is_some() && !spec.dry_run {
            Some(self.subscribe(&spec.namespace, &pod.name).await?)
        } else {
            None
        };
        Ok(Placed {
            pod,
            created: false,
            subscription,
        })
    }

    /// Answer with the pod, once it is where the request asked it to be.
    async fn finish(
        &self,
        spec: &DeploySpec,
        placed: Placed,
        deadline: Option<Instant>,
    ) -> Result<pb::DeployResponse> {
        let Placed {
            pod,
            created,
            subscription,
        } = placed;
        let view = match (spec.wait, subscription) {
            (Some((wanted, timeout)), Some(subscription)) => {
                let limit = Instant::now() + timeout;
                let limit = deadline
                    .map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d))
                    .map_or(limit, |d| d.min(limit));
                wait_for(subscription, &pod, wanted, limit, timeout).await?
            }
            _ => PodView::new(pod),
        };
        let pod_security = view
            .state
            .pod_security
            .map_or(pb::PodSecurity::Unspecified, pb::PodSecurity::from);
        Ok(pb::DeployResponse {
            pod: Some(pb::PodStatus::from(&view)),
            created,
            pod_security: pod_security.into(),
        })
    }
}

/// The request's pod, found or created, and its subscription when the request waits.
struct Placed {
    pod: PodState,
    created: bool,
    subscription: Option<Subscription>,
}

fn wanted_name(wanted: WaitFor) -> &'static str {
    match wanted {
        WaitFor::None => "NONE",
        WaitFor::Scheduled => "SCHEDULED",
        WaitFor::Running => "RUNNING",
        WaitFor::Ready => "READY",
    }
}

fn failed(view: &PodView) -> Error {
    Error::PodFailed {
        namespace: view.state.namespace.clone(),
        name: view.state.name.clone(),
        reason: reason_name(view.assessment.reason),
        message: view.assessment.message.clone(),
    }
}

/// Follow the pod until it meets `wanted`, fails, or `limit` passes.
async fn wait_for(
    mut subscription: Subscription,
    created: &PodState,
    wanted: WaitFor,
    limit: Instant,
    timeout: Duration,
) -> Result<PodView> {
    let mut last = PodView::new(created.clone());
    loop {
        let update = tokio::time::timeout_at(limit, subscription.updates.recv()).await;
        let view = match update {
            Err(_) => {
                let mut state = health_name(last.assessment.health);
                if !last.assessment.message.is_empty() {
                    state = format!(
                        "{state}, {}: {}",
                        reason_name(last.assessment.reason),
                        last.assessment.message
                    );
                }
                return Err(Error::WaitTimedOut {
                    pod: format!("{}/{}", last.state.namespace, last.state.name),
                    wanted: wanted_name(wanted),
                    waited: timeout,
                    state,
                });
            }
            Ok(None) => return Err(Error::ShuttingDown),
            Ok(Some(Update::Snapshot { pods, .. } | Update::Resync { pods, .. })) => match pods
                .into_iter()
                .find(|p| p.state.uid == created.uid || created.uid.is_empty())
            {
                Some(view) => view,
                None => continue,
            },
            Ok(Some(Update::Pod(view))) => view,
            Ok(Some(Update::Deleted(view))) => return Err(failed(&view)),
            Ok(Some(Update::Event(_))) => continue,
        };
        if wanted.is_met(
            &view.state.phase,
            view.state.node.is_some(),
            view.assessment.health,
        ) {
            return Ok((*view).clone());
        }
        if view.assessment.health.is_terminal() {
            return Err(failed(&view));
        }
        last = (*view).clone();
    }
}
