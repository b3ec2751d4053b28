//! The subcommands: each builds its request (refusing bad input before connecting), calls the
//! server, and follows a WatchStatus stream when it waits. The `deployment` family is in
//! `deployments`, with the helpers here.

use std::collections::HashMap;
use std::time::Duration;

use k8s_deployer::proto::deployer::v1 as pb;
use tokio::time::Instant;

use crate::args::{
    Cli, Command, DeleteArgs, DeployArgs, ListArgs, PodArgs, Template, Until, Wait, WatchArgs,
};
use crate::connect::connect;
use crate::exit::Failure;
use crate::follow::{Follower, Goal, open, watch_request};
use crate::output::{Output, Success};

/// How long a single call may take without `--timeout`.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `deploy --wait` and `delete --wait` wait without `--timeout` (as long as the
/// server's own default `wait_timeout`). The rollouts of the `deployment` commands too.
pub(crate) const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Run the command of `cli`, showing what happens on `out`.
pub(crate) async fn run(cli: &Cli, out: &mut Output) -> Result<Success, Failure> {
    match &cli.command {
        Command::Deploy(args) => deploy(cli, args, out).await,
        Command::Status(args) => status(cli, args, out).await,
        Command::List(args) => list(cli, args, out).await,
        Command::Delete(args) => delete(cli, args, out).await,
        Command::Watch(args) => watch(cli, args, out).await,
        Command::Deployment(command) => crate::deployments::run(cli, command, out).await,
    }
}

/// One unary call, bounded by `--timeout` (sent to the server as the call's deadline too).
pub(crate) async fn call<T>(
    cli: &Cli,
    send: impl AsyncFnOnce(tonic::Request<()>) -> Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, Failure> {
    call_within(cli.timeout.unwrap_or(DEFAULT_CALL_TIMEOUT), send).await
}

/// One unary call, bounded by `limit` (sent to the server as the call's deadline too).
pub(crate) async fn call_within<T>(
    limit: Duration,
    send: impl AsyncFnOnce(tonic::Request<()>) -> Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, Failure> {
    let mut request = tonic::Request::new(());
    request.set_timeout(limit);
    // A little longer than the deadline the server is given, so that its DEADLINE_EXCEEDED
    // (with its detail) normally arrives first.
    match tokio::time::timeout(limit + Duration::from_secs(1), send(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Failure::from_status(&status)),
        Err(_) => Err(Failure::timed_out(
            format!("no answer from the server within {limit:?}"),
            None,
        )),
    }
}

/// A duration as the proto's; one too long for it is bad input naming `flag`.
pub(crate) fn proto_duration(
    duration: Duration,
    flag: &str,
) -> Result<prost_types::Duration, Failure> {
    Ok(prost_types::Duration {
        seconds: i64::try_from(duration.as_secs())
            .map_err(|_| Failure::bad_input(format!("{flag} is too long")))?,
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    })
}

/// The same message with the metadata (deadline) of `template`.
pub(crate) fn with_meta<T>(template: tonic::Request<()>, message: T) -> tonic::Request<T> {
    let (metadata, extensions, ()) = template.into_parts();
    tonic::Request::from_parts(metadata, extensions, message)
}

async fn deploy(cli: &Cli, args: &DeployArgs, out: &mut Output) -> Result<Success, Failure> {
    let request = deploy_request(args)?;
    let namespace = request.namespace.clone();
    let wait = args.wait != Wait::None && !args.dry_run;
    let limit = cli.timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT);
    let deadline = Instant::now() + limit;
    let mut client = connect(&cli.connection).await?;
    let goal = |uid: String| Goal::Deployed {
        wanted: args.wait,
        uid,
    };

    // Knowing the name, open the stream before the pod exists, so that no Event of its first
    // moments is missed. With a generated name the stream opens once Deploy has answered; its
    // snapshot then carries the pod's state, and only Events of those milliseconds can be
    // missed.
    let early = match (&args.name, wait) {
        (Some(name), true) => {
            let request = watch_request(&namespace, Some(name), None, &goal(String::new()));
            Some(open(&mut client, &request).await?)
        }
        _ => None,
    };

    let response = call(cli, async |meta| {
        client.clone().deploy(with_meta(meta, request)).await
    })
    .await?;
    out.deployed(&response, args.dry_run);
    let pod = response.pod.unwrap_or_default();
    if !wait {
        return Ok(Success {
            pod: Some(pod),
            ..Success::default()
        });
    }
    out.following(&pod.name);
    let goal = goal(pod.uid.clone());
    let request = watch_request(&pod.namespace, Some(&pod.name), None, &goal);
    Follower::new(&mut client, request, goal, Some((deadline, limit)))
        .run(early, out)
        .await
}

/// The Deploy request of the flags. Deployctl never asks the server to wait (`wait_for` is
/// NONE): it follows the pod on a WatchStatus stream instead, so that progress can be shown
/// as it happens and a generated name is known at once.
fn deploy_request(args: &DeployArgs) -> Result<pb::DeployRequest, Failure> {
    let template = PodTemplate::of(&args.template)?;
    Ok(pb::DeployRequest {
        image: args.image.clone(),
        namespace: args.namespace.namespace.clone(),
        name: args.name.clone().unwrap_or_default(),
        labels: template.labels,
        annotations: template.annotations,
        env: template.env,
        ports: template.ports,
        command: template.command,
        args: template.args,
        resources: template.resources,
        restart_policy: args
            .restart
            .map_or(pb::RestartPolicy::Unspecified, pb::RestartPolicy::from)
            .into(),
        request_id: args.request_id.clone().unwrap_or_default(),
        dry_run: args.dry_run,
        wait_for: pb::WaitFor::None.into(),
        wait_timeout: None,
        pod_security: template.pod_security.into(),
        ..pb::DeployRequest::default()
    })
}

/// The pod template fields of the flags, as the Deploy and ApplyDeployment requests both
/// carry them.
pub(crate) struct PodTemplate {
    pub(crate) labels: HashMap<String, String>,
    pub(crate) annotations: HashMap<String, String>,
    pub(crate) env: Vec<pb::EnvVar>,
    pub(crate) ports: Vec<pb::ContainerPort>,
    pub(crate) command: Vec<String>,
    pub(crate) args: Vec<String>,
    pub(crate) resources: Option<pb::Resources>,
    pub(crate) pod_security: pb::PodSecurity,
}

impl PodTemplate {
    /// The fields of `template`; a key given twice is bad input.
    pub(crate) fn of(template: &Template) -> Result<PodTemplate, Failure> {
        let resources = if template.requests.is_empty() && template.limits.is_empty() {
            None
        } else {
            Some(pb::Resources {
                requests: unique(&template.requests, "--request")?,
                limits: unique(&template.limits, "--limit")?,
            })
        };
        Ok(PodTemplate {
            labels: unique(&template.labels, "--label")?,
            annotations: unique(&template.annotations, "--annotation")?,
            env: template
                .env
                .iter()
                .map(|(name, value)| pb::EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                    value_from: None,
                })
                .collect(),
            ports: template.ports.clone(),
            command: template.command.clone(),
            args: template.args.clone(),
            resources,
            pod_security: template
                .pod_security
                .map_or(pb::PodSecurity::Unspecified, pb::PodSecurity::from),
        })
    }
}

/// KEY=VALUE pairs as a map; a key given twice is refused rather than one value dropped.
fn unique(pairs: &[(String, String)], flag: &str) -> Result<HashMap<String, String>, Failure> {
    let mut map = HashMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            return Err(Failure::bad_input(format!(
                "{flag}: {key:?} is given twice"
            )));
        }
    }
    Ok(map)
}

async fn status(cli: &Cli, args: &PodArgs, out: &mut Output) -> Result<Success, Failure> {
    let client = connect(&cli.connection).await?;
    let request = pb::GetStatusRequest {
        namespace: args.namespace.namespace.clone(),
        name: args.name.clone(),
    };
    let response = call(cli, async |meta| {
        client.clone().get_status(with_meta(meta, request)).await
    })
    .await?;
    let pod = response.pod.unwrap_or_default();
    out.status(&pod);
    Ok(Success {
        pod: Some(pod),
        ..Success::default()
    })
}

async fn list(cli: &Cli, args: &ListArgs, out: &mut Output) -> Result<Success, Failure> {
    let client = connect(&cli.connection).await?;
    let request = pb::ListPodsRequest {
        namespace: args.namespace.namespace.clone(),
        label_selector: args.selector.clone().unwrap_or_default(),
    };
    let response = call(cli, async |meta| {
        client.clone().list_pods(with_meta(meta, request)).await
    })
    .await?;
    out.list(&args.namespace.namespace, &response.pods);
    Ok(Success::default())
}

async fn delete(cli: &Cli, args: &DeleteArgs, out: &mut Output) -> Result<Success, Failure> {
    let grace_period = args
        .grace_period
        .map(|grace| proto_duration(grace, "--grace-period"))
        .transpose()?;
    let namespace = args.namespace.namespace.clone();
    let limit = cli.timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT);
    let deadline = Instant::now() + limit;
    let mut client = connect(&cli.connection).await?;
    // Open the stream first, so that the deletion cannot happen before it is watched.
    let early = if args.wait {
        let request = watch_request(&namespace, Some(&args.name), None, &Goal::Gone);
        Some(open(&mut client, &request).await?)
    } else {
        None
    };
    let request = pb::DeletePodRequest {
        namespace: namespace.clone(),
        name: args.name.clone(),
        grace_period,
    };
    let response = call(cli, async |meta| {
        client.clone().delete_pod(with_meta(meta, request)).await
    })
    .await?;
    let pod = response.pod.unwrap_or_default();
    out.deleting(&pod);
    if !args.wait {
        return Ok(Success {
            pod: Some(pod),
            ..Success::default()
        });
    }
    out.following(&args.name);
    let request = watch_request(&namespace, Some(&args.name), None, &Goal::Gone);
    Follower::new(&mut client, request, Goal::Gone, Some((deadline, limit)))
        .run(early, out)
        .await
}

async fn watch(cli: &Cli, args: &WatchArgs, out: &mut Output) -> Result<Success, Failure> {
    let deadline = cli.timeout.map(|limit| (Instant::now() + limit, limit));
    let mut client = connect(&cli.connection).await?;
    let goal = match args.until {
        Some(Until::Ready) => Goal::Ready,
        Some(Until::Terminal) => Goal::Terminal,
        None => Goal::Follow,
    };
    let namespace = &args.namespace.namespace;
    let request = watch_request(
        namespace,
        args.name.as_deref(),
        args.selector.as_deref(),
        &goal,
    );
    let target = match (&args.name, &args.selector) {
        (Some(name), _) => name.clone(),
        (None, selector) => format!("pods matching {}", selector.as_deref().unwrap_or("")),
    };
    out.following(&target);
    Follower::new(&mut client, request, goal, deadline)
        .run(None, out)
        .await
}
