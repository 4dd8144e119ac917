//! The Kubernetes provider: namespaces, IRSA service accounts, the demo app's Deployment and
//! its LoadBalancer Service, on the stack's EKS cluster.
//!
//! pwless talks to the API server itself (kube-rs), with no kubectl or kubeconfig: the
//! endpoint and CA come from EKS `DescribeCluster`, the bearer token is one pwless signs
//! ([`crate::eks_token`]) from the same credentials it uses for AWS, made again well before
//! EKS's 15 minutes run out. `PWLESS_KUBE_API_URL`, `PWLESS_KUBE_CA_FILE`, `PWLESS_KUBE_TOKEN`
//! and `PWLESS_KUBE_TLS_SERVER_NAME` point it at another API server (a tunnel, a test server);
//! through a tunnel with the cluster's own CA, the certificate is still checked against the
//! cluster endpoint's name.
//!
//! Every write is a server-side apply under the field manager `pwless`, forced: pwless owns
//! the fields it declares and takes them back from whoever changed them (that is the drift
//! repair the plan showed); fields it does not declare stay with their owners. When EKS says
//! the cluster is gone, its objects read as gone and their deletes are done, so a stack whose
//! cluster was deleted by hand still plans and destroys. Apply waits for
//! a Deployment to be available and a LoadBalancer Service to get its address; delete waits
//! until the object is gone, so a Service's load balancer (and its network interfaces in the
//! VPC's subnets) is released before destroy goes on to the network.

use std::time::{Duration, Instant, SystemTime};

use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::wait::{self, Poll};
use super::{Applied, ErrorKind, Inputs, Provider, ProviderError, input_str};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::secret::Secret;
use crate::state::ResourceState;
use crate::token::SigningCredentials;

pub const FIELD_MANAGER: &str = "pwless";
pub use crate::kubernetes::ROLE_ARN_ANNOTATION;
/// A client (and its token) is made again after this; EKS accepts a token for 15 minutes.
const CLIENT_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long apply waits for a Deployment to be available or a load balancer to appear, and
/// delete for an object to go.
const READY_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long a database connection waits for a Ready relay pod.
const RELAY_READY_LIMIT: Duration = Duration::from_secs(120);

/// Where the API server is, when not where EKS says (from the environment).
#[derive(Debug, Clone, Default)]
pub struct KubernetesSettings {
    pub api_url: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
    pub token: Option<Secret>,
    pub tls_server_name: Option<String>,
}

impl KubernetesSettings {
    pub fn from_environment() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        KubernetesSettings {
            api_url: var("PWLESS_KUBE_API_URL"),
            ca_file: var("PWLESS_KUBE_CA_FILE").map(Into::into),
            token: var("PWLESS_KUBE_TOKEN").map(Secret::new),
            tls_server_name: var("PWLESS_KUBE_TLS_SERVER_NAME"),
        }
    }
}

struct Connection {
    cluster: String,
    client: kube::Client,
    made: Instant,
}

pub struct KubernetesProvider {
    region: String,
    settings: KubernetesSettings,
    eks: aws_sdk_eks::Client,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    connection: tokio::sync::Mutex<Option<Connection>>,
}

/// The API path of each kind.
fn api_resource(kind: ResourceKind) -> Result<(ApiResource, bool), ProviderError> {
    let (group, kind_name, plural, namespaced) = match kind {
        ResourceKind::KubernetesNamespace => ("", "Namespace", "namespaces", false),
        ResourceKind::KubernetesServiceAccount => ("", "ServiceAccount", "serviceaccounts", true),
        ResourceKind::KubernetesDeployment => ("apps", "Deployment", "deployments", true),
        ResourceKind::KubernetesService => ("", "Service", "services", true),
        ResourceKind::KubernetesConfigMap => ("", "ConfigMap", "configmaps", true),
        ResourceKind::KubernetesNetworkPolicy => (
            "networking.k8s.io",
            "NetworkPolicy",
            "networkpolicies",
            true,
        ),
        ResourceKind::KubernetesDbRelay => ("apps", "Deployment", "deployments", true),
        other => {
            return Err(ProviderError::permanent(format!(
                "{other} is not a Kubernetes kind"
            )));
        }
    };
    let api_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    Ok((
        ApiResource {
            group: group.to_string(),
            version: "v1".to_string(),
            api_version,
            kind: kind_name.to_string(),
            plural: plural.to_string(),
        },
        namespaced,
    ))
}

/// The cluster name in an EKS cluster ARN (`arn:aws:eks:<region>:<account>:cluster/<name>`).
fn cluster_name(arn: &str) -> Result<&str, ProviderError> {
    arn.rsplit_once(":cluster/")
        .map(|(_, name)| name)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ProviderError::permanent(format!("`{arn}` is not an EKS cluster ARN")))
}

fn kube_error(what: &str) -> impl Fn(kube::Error) -> ProviderError + '_ {
    move |error| match error {
        kube::Error::Api(status) => {
            let kind = match status.code {
                429 | 500 | 502 | 503 | 504 => ErrorKind::Retryable,
                _ => ErrorKind::Permanent,
            };
            let hint = match status.code {
                401 => {
                    ": the API server did not accept pwless's EKS token (are the AWS credentials valid, and is this the cluster's endpoint?)"
                }
                403 => {
                    ": the deploying principal needs cluster-admin access through an EKS access entry"
                }
                _ => "",
            };
            ProviderError {
                kind,
                code: Some(status.reason.clone()),
                message: format!(
                    "cannot {what}: the Kubernetes API answered {} {}: {}{hint}",
                    status.code, status.reason, status.message
                ),
            }
        }
        // Connection refused or reset, timeouts: the API server may be coming up.
        kube::Error::HyperError(_) | kube::Error::Service(_) => ProviderError {
            kind: ErrorKind::Retryable,
            code: None,
            message: format!("cannot {what}: {error}"),
        },
        other => ProviderError::permanent(format!("cannot {what}: {other}")),
    }
}

/// `namespace/name` or `name`.
fn object_id(inputs: &Inputs, namespaced: bool) -> Result<(Option<String>, String), ProviderError> {
    let name = input_str(inputs, "name")?.to_string();
    let namespace = namespaced
        .then(|| input_str(inputs, "namespace").map(str::to_string))
        .transpose()?;
    Ok((namespace, name))
}

fn display_id(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    }
}

/// The string Kubernetes keeps for an environment value of the stack (numbers as text).
fn env_text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

impl KubernetesProvider {
    pub fn new(region: &str, config: &aws_config::SdkConfig, settings: KubernetesSettings) -> Self {
        KubernetesProvider {
            region: region.to_string(),
            settings,
            eks: aws_sdk_eks::Client::new(config),
            credentials: config.credentials_provider(),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    async fn signing_credentials(&self) -> Result<SigningCredentials, ProviderError> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self.credentials.as_ref().ok_or_else(|| {
            ProviderError::permanent("no AWS credentials to sign the EKS token with")
        })?;
        let credentials = provider.provide_credentials().await.map_err(|error| {
            ProviderError::permanent(format!("no AWS credentials for the EKS token: {error}"))
        })?;
        Ok(SigningCredentials::from(&credentials))
    }

    /// A client for the cluster `cluster_arn` names, made again when its token gets old.
    async fn client(&self, cluster_arn: &str) -> Result<kube::Client, ProviderError> {
        let cluster = cluster_name(cluster_arn)?;
        let mut connection = self.connection.lock().await;
        if let Some(existing) = connection.as_ref()
            && existing.cluster == cluster
            && existing.made.elapsed() < CLIENT_LIFETIME
        {
            return Ok(existing.client.clone());
        }
        let client = self.connect(cluster).await?;
        *connection = Some(Connection {
            cluster: cluster.to_string(),
            client: client.clone(),
            made: Instant::now(),
        });
        Ok(client)
    }

    async fn connect(&self, cluster: &str) -> Result<kube::Client, ProviderError> {
        let settings = &self.settings;
        // EKS tells the endpoint and CA unless the environment names both.
        let described = if settings.api_url.is_some() && settings.ca_file.is_some() {
            None
        } else {
            let output = self
                .eks
                .describe_cluster()
                .name(cluster)
                .send()
                .await
                .map_err(crate::provider::aws::sdk_error(
                    "read the EKS cluster for its Kubernetes API endpoint",
                ))?;
            let described = output.cluster.ok_or_else(|| {
                ProviderError::permanent(format!("EKS cluster `{cluster}` is not there"))
            })?;
            Some(described)
        };
        let endpoint = described
            .as_ref()
            .and_then(|cluster| cluster.endpoint.clone());
        let url = settings
            .api_url
            .clone()
            .or_else(|| endpoint.clone())
            .ok_or_else(|| {
                ProviderError::permanent(format!("EKS cluster `{cluster}` has no endpoint yet"))
            })?;
        let ca_pem = match &settings.ca_file {
            Some(path) => std::fs::read(path).map_err(|error| {
                ProviderError::permanent(format!(
                    "cannot read PWLESS_KUBE_CA_FILE {}: {error}",
                    path.display()
                ))
            })?,
            None => {
                use base64::Engine as _;
                let data = described
                    .as_ref()
                    .and_then(|cluster| cluster.certificate_authority.as_ref())
                    .and_then(|authority| authority.data.clone())
                    .unwrap_or_default();
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|_| {
                        ProviderError::permanent(format!(
                            "EKS cluster `{cluster}` reports no readable certificate authority"
                        ))
                    })?
            }
        };
        let roots: Vec<Vec<u8>> = crate::db::certificates(&ca_pem)
            .map_err(|message| {
                ProviderError::permanent(format!("the Kubernetes API's CA: {message}"))
            })?
            .into_iter()
            .map(|certificate| certificate.to_vec())
            .collect();
        if roots.is_empty() {
            return Err(ProviderError::permanent(match &settings.ca_file {
                Some(path) => format!(
                    "PWLESS_KUBE_CA_FILE {} holds no certificate",
                    path.display()
                ),
                None => format!(
                    "the certificate authority EKS reports for cluster `{cluster}` holds no certificate \
                     (to reach another API server, set PWLESS_KUBE_API_URL and PWLESS_KUBE_CA_FILE)"
                ),
            }));
        }
        let uri: http::Uri = url.parse().map_err(|error| {
            ProviderError::permanent(format!("`{url}` is not a Kubernetes API URL: {error}"))
        })?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(roots);
        config.read_timeout = Some(Duration::from_secs(60));
        // Through a tunnel with the cluster's CA, the certificate names the cluster endpoint.
        config.tls_server_name = settings.tls_server_name.clone().or_else(|| {
            (settings.api_url.is_some() && settings.ca_file.is_none())
                .then(|| endpoint.as_deref().and_then(url_host))
                .flatten()
        });
        let token = match &settings.token {
            Some(token) => token.clone(),
            None => crate::eks_token::token(
                &self.signing_credentials().await?,
                &self.region,
                cluster,
                SystemTime::now(),
            ),
        };
        let mut authorization = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| {
                ProviderError::permanent("the Kubernetes token is not a valid header value")
            })?;
        authorization.set_sensitive(true);
        config
            .headers
            .push((http::header::AUTHORIZATION, authorization));
        kube::Client::try_from(config).map_err(|error| {
            ProviderError::permanent(format!("cannot make a Kubernetes client: {error}"))
        })
    }

    async fn api(
        &self,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<(kube::Api<DynamicObject>, Option<String>, String), ProviderError> {
        let (resource, namespaced) = api_resource(kind)?;
        let (namespace, name) = object_id(inputs, namespaced)?;
        let client = self.client(input_str(inputs, "cluster_arn")?).await?;
        let api = match &namespace {
            Some(namespace) => kube::Api::namespaced_with(client, namespace, &resource),
            None => kube::Api::all_with(client, &resource),
        };
        Ok((api, namespace, name))
    }

    /// The object as the API server has it now, or `None`. Each call takes the client from
    /// the cache, so a long wait goes on with fresh tokens.
    async fn get(
        &self,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Option<DynamicObject>, ProviderError> {
        let (api, namespace, name) = self.api(kind, inputs).await?;
        api.get_opt(&name).await.map_err(kube_error(&format!(
            "read {kind} {}",
            display_id(namespace.as_deref(), &name)
        )))
    }

    /// [`ErrorKind::Taken`] when the object `inputs` describe exists without this stack's
    /// `pwless/stack` label.
    async fn refuse_foreign(
        &self,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<(), ProviderError> {
        let (api, namespace, name) = match self.api(kind, inputs).await {
            Err(error) if error.is_not_found() => return Ok(()),
            other => other?,
        };
        let id = display_id(namespace.as_deref(), &name);
        let Some(live) = api
            .get_opt(&name)
            .await
            .map_err(kube_error(&format!("look for {kind} {id}")))?
        else {
            return Ok(());
        };
        let stack = inputs
            .get("labels")
            .and_then(|labels| labels.get("pwless/stack"))
            .and_then(Value::as_str);
        let owner = live
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get("pwless/stack"))
            .map(String::as_str);
        if live.metadata.deletion_timestamp.is_some() || owner == stack {
            return Ok(());
        }
        let whose = match owner {
            Some(other) => format!("stack {other}'s (its pwless/stack label)"),
            None => "not made by pwless (it has no pwless/stack label)".to_string(),
        };
        Err(ProviderError {
            kind: ErrorKind::Taken,
            code: None,
            message: format!(
                "{kind} {id} exists already and is {whose}: pwless does not take it over, so neither this apply nor a later destroy changes it; give the stack another name for it, or remove it if it is a leftover"
            ),
        })
    }

    /// Server-side apply of the object, then the wait its kind needs.
    async fn apply(&self, kind: ResourceKind, inputs: &Inputs) -> Result<Applied, ProviderError> {
        let object = crate::kubernetes::object_of(kind, |name| {
            inputs.get(name).cloned().unwrap_or(Value::Null)
        })
        .ok_or_else(|| ProviderError::permanent(format!("{kind} is not a Kubernetes kind")))?;
        let (api, namespace, name) = self.api(kind, inputs).await?;
        let id = display_id(namespace.as_deref(), &name);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = wait::retrying(Duration::from_secs(120), || async {
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .map_err(kube_error(&format!("apply {kind} {id}")))
        })
        .await?;
        let mut outputs = std::collections::BTreeMap::new();
        match kind {
            // A Pod Identity service account must carry no IRSA annotation (the SDKs would
            // take IRSA's web identity first). Server-side apply removes only what pwless set
            // before; one someone else set (kubectl annotate) goes with a merge patch.
            ResourceKind::KubernetesServiceAccount
                if inputs.get("role_arn").is_none_or(Value::is_null)
                    && applied
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|annotations| {
                            annotations.contains_key(ROLE_ARN_ANNOTATION)
                        }) =>
            {
                let remove = json!({"metadata": {"annotations": {ROLE_ARN_ANNOTATION: null}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&remove))
                    .await
                    .map_err(kube_error(&format!("remove the IRSA annotation of {id}")))?;
            }
            ResourceKind::KubernetesDeployment | ResourceKind::KubernetesDbRelay => {
                let generation = applied.metadata.generation.unwrap_or(0);
                wait::until(
                    &format!("Deployment {id} to be available"),
                    READY_LIMIT,
                    || async {
                        Ok(match self.get(kind, inputs).await? {
                            Some(live) => deployment_progress(&live.data, generation),
                            None => Poll::Pending("the Deployment is gone".into()),
                        })
                    },
                )
                .await?;
            }
            ResourceKind::KubernetesService => {
                let hostname = wait::until(
                    &format!("Service {id} to get its load balancer"),
                    READY_LIMIT,
                    || async {
                        let live = self.get(kind, inputs).await?;
                        Ok(
                            match live.and_then(|live| load_balancer_address(&live.data)) {
                                Some(address) => Poll::Ready(address),
                                None => Poll::Pending("no load balancer address yet".into()),
                            },
                        )
                    },
                )
                .await?;
                outputs.insert("load_balancer_hostname".to_string(), json!(hostname));
            }
            _ => {}
        }
        Ok(Applied {
            id: Some(id),
            outputs,
        })
    }

    /// A byte stream to the database through a Ready relay pod of `relay` (the `relay` map of
    /// a database connection: `cluster_arn`, `namespace`, `app`, `stack`), by the Kubernetes
    /// API's pod port-forward (WebSocket, subprotocol `v4.channel.k8s.io`) to the relay's
    /// port. Also gives the port's error channel: what the kubelet says when the relay
    /// cannot be reached (an error of the forward, not of the database).
    /// Errors: the cluster or its API cannot be reached, no relay pod is Ready, the API
    /// refuses the forward.
    pub async fn open_relay(&self, relay: &Value) -> Result<RelayStream, ProviderError> {
        use k8s_openapi::api::core::v1::Pod;
        let field = |name: &str| {
            relay[name].as_str().ok_or_else(|| {
                ProviderError::permanent(format!("the database connection's relay has no `{name}`"))
            })
        };
        let client = self.client(field("cluster_arn")?).await?;
        let namespace = field("namespace")?;
        // A database other than the shorthand's names its relay (`db-relay-<database>`).
        let relay_name = relay["name"].as_str().unwrap_or(crate::relay::NAME);
        let selector = format!(
            "app.kubernetes.io/name={},pwless/stack={}",
            field("app")?,
            field("stack")?
        );
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
        // A relay pod being replaced (a node drained, a rollout) is back within a minute or
        // two: wait that long for a Ready one, then say why none is.
        let ready = wait::until(
            &format!("a database relay pod to be Ready in namespace {namespace}"),
            RELAY_READY_LIMIT,
            || async {
                let listed = pods
                    .list(&kube::api::ListParams::default().labels(&selector))
                    .await
                    .map_err(kube_error(&format!(
                        "find the database relay's pods in namespace {namespace}"
                    )))?;
                let ready = listed.items.iter().find(|pod| {
                    pod.metadata.deletion_timestamp.is_none()
                        && pod
                            .status
                            .as_ref()
                            .and_then(|status| status.conditions.as_ref())
                            .is_some_and(|conditions| {
                                conditions.iter().any(|condition| {
                                    condition.type_ == "Ready" && condition.status == "True"
                                })
                            })
                });
                Ok(match ready.and_then(|pod| pod.metadata.name.clone()) {
                    Some(name) => Poll::Ready(name),
                    None => Poll::Pending(format!(
                        "{} pods found with {selector}, none Ready; `kubectl -n {namespace} describe deployment {}` says why",
                        listed.items.len(),
                        relay_name
                    )),
                })
            },
        )
        .await;
        let name = ready?;
        let mut forwarder = pods
            .portforward(&name, &[crate::relay::PORT])
            .await
            .map_err(|error| {
                let what = format!("open a port-forward to the database relay pod {namespace}/{name}");
                // A refused upgrade is no API error to kube-rs: say what the caller needs.
                let refused = matches!(
                    &error,
                    kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(status))
                        if *status == http::StatusCode::FORBIDDEN || *status == http::StatusCode::UNAUTHORIZED
                );
                let mut failure = kube_error(&what)(error);
                if refused {
                    failure.message.push_str(&format!(
                        " (the caller needs `create` on pods/portforward and `list` on pods in namespace {namespace}: cluster.admins have both)"
                    ));
                }
                failure
            })?;
        let stream = forwarder.take_stream(crate::relay::PORT).ok_or_else(|| {
            ProviderError::permanent("the port-forward gave no stream for the relay's port")
        })?;
        let error = forwarder.take_error(crate::relay::PORT);
        Ok(RelayStream {
            pod: format!("{namespace}/{name}"),
            stream,
            error: error.map(|future| Box::pin(future) as _),
        })
    }
}

impl Provider for KubernetesProvider {
    fn supports(&self, kind: ResourceKind) -> bool {
        kind.provider() == crate::graph::Provider::Kubernetes
    }

    /// Refuses to take over an object that exists and is not this stack's (its `pwless/stack`
    /// label names another stack, or it has none): a service account or Deployment a team made
    /// is never overwritten by a forced apply, nor deleted later by destroy. Namespaces are
    /// containers others share: applying one changes only what pwless declares.
    async fn create(
        &self,
        _address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Applied, ProviderError> {
        if kind != ResourceKind::KubernetesNamespace {
            self.refuse_foreign(kind, inputs).await?;
        }
        self.apply(kind, inputs).await
    }

    /// Server-side apply of the whole object: every declared field is set, whatever changed.
    async fn update(
        &self,
        resource: &ResourceState,
        inputs: &Inputs,
        _changed: &[String],
    ) -> Result<Applied, ProviderError> {
        self.apply(resource.kind, inputs).await
    }

    /// The object as it is, in the terms of the inputs: only what pwless declares is compared,
    /// so fields the API server or controllers add are never drift.
    async fn read(&self, resource: &ResourceState) -> Result<Observed, ProviderError> {
        let prior = &resource.inputs;
        let (api, namespace, name) = match self.api(resource.kind, prior).await {
            // The cluster is gone, and every object in it with it.
            Err(error) if error.is_not_found() => return Ok(Observed::Missing),
            other => other?,
        };
        let id = display_id(namespace.as_deref(), &name);
        let live = api
            .get_opt(&name)
            .await
            .map_err(kube_error(&format!("read {} {id}", resource.kind)))?;
        let Some(live) = live else {
            return Ok(Observed::Missing);
        };
        if live.metadata.deletion_timestamp.is_some() {
            return Ok(Observed::Missing);
        }
        let data = &live.data;
        let mut observed: Vec<(&'static str, Value)> = vec![(
            "labels",
            declared_labels(prior.get("labels"), live.metadata.labels.as_ref()),
        )];
        let mut outputs = resource.outputs.clone();
        match resource.kind {
            ResourceKind::KubernetesServiceAccount => {
                let role = live
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|annotations| annotations.get(ROLE_ARN_ANNOTATION))
                    .map_or(Value::Null, |arn| json!(arn));
                observed.push(("role_arn", role));
            }
            ResourceKind::KubernetesDeployment => {
                let pod = &data["spec"]["template"]["spec"];
                let container = &pod["containers"][0];
                observed.push(("replicas", data["spec"]["replicas"].clone()));
                observed.push(("service_account", pod["serviceAccountName"].clone()));
                observed.push(("image", container["image"].clone()));
                observed.push(("port", container["ports"][0]["containerPort"].clone()));
                observed.push(("env", observed_env(prior.get("env"), &container["env"])));
                if prior.contains_key("identity") {
                    let annotation = &data["spec"]["template"]["metadata"]["annotations"]
                        [crate::kubernetes::IDENTITY_ANNOTATION];
                    observed.push(("identity", annotation.clone()));
                }
            }
            ResourceKind::KubernetesConfigMap => {
                observed.push(("data", data["data"].clone()));
            }
            ResourceKind::KubernetesNetworkPolicy => {
                let spec = &data["spec"];
                observed.push(("pod_selector", spec["podSelector"]["matchLabels"].clone()));
                observed.push((
                    "egress_cidr",
                    spec["egress"][0]["to"][0]["ipBlock"]["cidr"].clone(),
                ));
                observed.push(("egress_port", spec["egress"][0]["ports"][0]["port"].clone()));
            }
            ResourceKind::KubernetesDbRelay => {
                let pod = &data["spec"]["template"];
                let container = &pod["spec"]["containers"][0];
                let env = observed_env(None, &container["env"]);
                observed.push(("image", container["image"].clone()));
                observed.push((
                    "config_sha256",
                    pod["metadata"]["annotations"]["pwless/config-sha256"].clone(),
                ));
                observed.push((
                    "config_map",
                    pod["spec"]["volumes"][0]["configMap"]["name"].clone(),
                ));
                observed.push(("endpoint", env["DB_ENDPOINT"].clone()));
                // The port is a number in the inputs and text in the environment.
                let port = env["DB_PORT"]
                    .as_str()
                    .and_then(|text| text.parse::<u64>().ok());
                observed.push((
                    "port",
                    port.map_or(env["DB_PORT"].clone(), |port| json!(port)),
                ));
            }
            ResourceKind::KubernetesService => {
                let spec = &data["spec"];
                let port = &spec["ports"][0];
                observed.push(("type", spec["type"].clone()));
                observed.push(("port", port["port"].clone()));
                observed.push(("target_port", port["targetPort"].clone()));
                observed.push(("selector", spec["selector"].clone()));
                if let Some(address) = load_balancer_address(data) {
                    outputs.insert("load_balancer_hostname".to_string(), json!(address));
                }
            }
            _ => {}
        }
        Ok(Observed::Present {
            inputs: super::overlay(prior, observed),
            outputs,
        })
    }

    /// Deletes the object and waits until it is gone (a Service until its load balancer is
    /// released, a Namespace until everything in it is).
    async fn delete(&self, resource: &ResourceState) -> Result<(), ProviderError> {
        let (api, namespace, name) = match self.api(resource.kind, &resource.inputs).await {
            Err(error) if error.is_not_found() => return Ok(()),
            other => other?,
        };
        let id = display_id(namespace.as_deref(), &name);
        let what = format!("delete {} {id}", resource.kind);
        let params = DeleteParams::foreground();
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
            Err(error) => return Err(kube_error(&what)(error)),
        }
        wait::until(
            &format!("{} {id} to go", resource.kind),
            READY_LIMIT,
            || async {
                Ok(match self.get(resource.kind, &resource.inputs).await? {
                    None => Poll::Ready(()),
                    Some(_) => Poll::Pending("still terminating".into()),
                })
            },
        )
        .await
    }

    /// Object names are deterministic: an interrupted create left the object under its name,
    /// labelled with this stack. Applying it again is what finishes the create.
    async fn adopt(
        &self,
        _address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Option<Applied>, ProviderError> {
        let (api, namespace, name) = match self.api(kind, inputs).await {
            Err(error) if error.is_not_found() => return Ok(None),
            other => other?,
        };
        let id = display_id(namespace.as_deref(), &name);
        let live = api
            .get_opt(&name)
            .await
            .map_err(kube_error(&format!("look for {kind} {id}")))?;
        let stack = inputs
            .get("labels")
            .and_then(|labels| labels.get("pwless/stack"))
            .and_then(Value::as_str);
        let ours = live.is_some_and(|live| {
            live.metadata.deletion_timestamp.is_none()
                && live
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get("pwless/stack"))
                    .map(String::as_str)
                    == stack
        });
        if !ours {
            return Ok(None);
        }
        self.apply(kind, inputs).await.map(Some)
    }
}

/// Waiting reasons of a container that will not start without someone's help: the Job fails at
/// once instead of at its deadline (kubelet's `ErrImagePull`, `ImagePullBackOff`,
/// `InvalidImageName`, `CreateContainerConfigError`).
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
];

/// How a Job run by [`KubernetesProvider::run_job`] ended, and what its pod printed.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// `namespace/name` of the Job.
    pub job: String,
    /// The Job's `Complete` (true) or `Failed` (false) condition.
    pub succeeded: bool,
    /// Why it failed, when it did: the condition's (or the stuck container's) reason and
    /// message; or why its log could not be read.
    pub failure: Option<String>,
    /// The log of its pod (stdout and stderr, as `kubectl logs` gives them); empty when no pod
    /// was made.
    pub log: String,
}

impl KubernetesProvider {
    /// Creates `job` (a `batch/v1` Job with `backoffLimit: 0`) in the cluster `cluster_arn`
    /// names, waits up to `limit` for it to complete or fail (a pod whose image cannot be
    /// pulled, or whose container cannot be made, fails it at once), reads its pod's log and
    /// deletes the Job and its pods (foreground propagation), whatever happened before. A
    /// create whose answer was lost is looked up and the Job taken as made. Left behind only
    /// when the delete itself fails or the run is killed: then the Job's
    /// `activeDeadlineSeconds` and `ttlSecondsAfterFinished` have Kubernetes remove it.
    /// Errors: the API refuses the create, or the Job neither completes nor fails in time.
    pub async fn run_job(
        &self,
        cluster_arn: &str,
        job: &k8s_openapi::api::batch::v1::Job,
        limit: Duration,
    ) -> Result<JobRun, ProviderError> {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let client = self.client(cluster_arn).await?;
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let jobs: kube::Api<Job> = kube::Api::namespaced(client.clone(), &namespace);
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, &namespace);
        let label = format!("Job {namespace}/{name}");
        if let Err(error) = jobs.create(&kube::api::PostParams::default(), job).await {
            let failure = kube_error(&format!("create {label}"))(error);
            // Only a refusal is sure; after a lost answer the Job may exist (its name is
            // unique to this run).
            let made = failure.kind == ErrorKind::Retryable
                && jobs.get_opt(&name).await.ok().flatten().is_some();
            if !made {
                return Err(failure);
            }
        }
        let selector = format!("job-name={name}");
        let ended = wait::until(&format!("{label} to complete"), limit, || async {
            let found = jobs
                .get(&name)
                .await
                .map_err(kube_error(&format!("read {label}")))?;
            let conditions = found
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default();
            let ended = conditions.iter().find(|condition| {
                (condition.type_ == "Complete" || condition.type_ == "Failed")
                    && condition.status == "True"
            });
            Ok(match ended {
                Some(condition) => Poll::Ready((
                    condition.type_ == "Complete",
                    condition.reason.clone().unwrap_or_default(),
                    condition.message.clone().unwrap_or_default(),
                )),
                None => {
                    // A container that cannot start never ends the Job by itself (it waits
                    // for its deadline): say so now.
                    let listed = pods
                        .list(&kube::api::ListParams::default().labels(&selector))
                        .await
                        .map_err(kube_error(&format!("find the pod of {label}")))?;
                    let stuck = listed.items.iter().find_map(|pod| {
                        pod.status
                            .as_ref()?
                            .container_statuses
                            .as_ref()?
                            .iter()
                            .find_map(|status| {
                                let waiting = status.state.as_ref()?.waiting.as_ref()?;
                                let reason = waiting.reason.clone().unwrap_or_default();
                                STUCK.contains(&reason.as_str()).then(|| {
                                    (false, reason, waiting.message.clone().unwrap_or_default())
                                })
                            })
                    });
                    match stuck {
                        Some(failed) => Poll::Ready(failed),
                        None => Poll::Pending(format!(
                            "not ended; `kubectl -n {namespace} describe job {name}` says why"
                        )),
                    }
                }
            })
        })
        .await;
        // The log, or why there is none (a container that never started has none).
        let log = match &ended {
            Ok(_) => {
                let listed = pods
                    .list(&kube::api::ListParams::default().labels(&selector))
                    .await
                    .map_err(kube_error(&format!("find the pod of {label}")));
                match listed.map(|listed| listed.items.into_iter().next()) {
                    Ok(Some(pod)) => pods
                        .logs(
                            pod.metadata.name.as_deref().unwrap_or_default(),
                            &kube::api::LogParams::default(),
                        )
                        .await
                        .map_err(kube_error(&format!("read the log of {label}'s pod"))),
                    Ok(None) => Ok(String::new()),
                    Err(error) => Err(error),
                }
            }
            Err(_) => Ok(String::new()),
        };
        let deleted = jobs
            .delete(&name, &kube::api::DeleteParams::foreground())
            .await
            .map_err(kube_error(&format!("delete {label}")));
        let (succeeded, reason, message) = ended?;
        deleted?;
        let (log, unread) = match log {
            Ok(log) => (log, None),
            Err(error) => (String::new(), Some(error.message)),
        };
        let failure = match (succeeded, unread) {
            (true, None) => None,
            (true, Some(unread)) => Some(unread),
            (false, None) => Some(format!("{reason}: {message}")),
            (false, Some(unread)) => Some(format!("{reason}: {message}; {unread}")),
        };
        Ok(JobRun {
            job: format!("{namespace}/{name}"),
            succeeded,
            failure,
            log,
        })
    }
}

/// A port-forwarded stream to the database relay ([`KubernetesProvider::open_relay`]).
pub struct RelayStream {
    /// `namespace/name` of the pod the stream goes through.
    pub pod: String,
    pub stream: tokio::io::DuplexStream,
    /// Resolves with the kubelet's message when the forward fails (or `None` once it ends).
    pub error: Option<std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>>>,
}

/// The live values of the labels pwless declared (a missing one is left out, so it shows as a
/// change); labels others added are not pwless's business.
fn declared_labels(
    declared: Option<&Value>,
    live: Option<&std::collections::BTreeMap<String, String>>,
) -> Value {
    let Some(declared) = declared.and_then(Value::as_object) else {
        return declared.cloned().unwrap_or(Value::Null);
    };
    Value::Object(
        declared
            .keys()
            .filter_map(|key| {
                live.and_then(|live| live.get(key))
                    .map(|value| (key.clone(), json!(value)))
            })
            .collect(),
    )
}

/// The container's environment as the `env` input: a value equal to the declared one as text
/// keeps the declared form (`DB_PORT` is a number in the stack and text in Kubernetes).
fn observed_env(declared: Option<&Value>, live: &Value) -> Value {
    let declared = declared.and_then(Value::as_object);
    let entries = live.as_array().map(Vec::as_slice).unwrap_or_default();
    Value::Object(
        entries
            .iter()
            .filter_map(|entry| {
                let name = entry["name"].as_str()?;
                let text = entry["value"].as_str().unwrap_or_default();
                let value = match declared.and_then(|declared| declared.get(name)) {
                    Some(value) if env_text(value) == text => value.clone(),
                    _ => json!(text),
                };
                Some((name.to_string(), value))
            })
            .collect(),
    )
}

/// Whether the Deployment's controller has rolled out `generation` and every replica is
/// available (what `kubectl rollout status` waits for).
fn deployment_progress(live: &Value, generation: i64) -> Poll<()> {
    let status = &live["status"];
    let wanted = live["spec"]["replicas"].as_i64().unwrap_or(1);
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    let updated = status["updatedReplicas"].as_i64().unwrap_or(0);
    let available = status["availableReplicas"].as_i64().unwrap_or(0);
    // Pods of the old template still running (`kubectl rollout status` waits for them too):
    // a relay pod of the old template may still forward to the old endpoint.
    let old = status["replicas"].as_i64().unwrap_or(0) - updated;
    if let Some(stalled) = status["conditions"].as_array().and_then(|conditions| {
        conditions.iter().find(|condition| {
            condition["type"] == "Progressing" && condition["reason"] == "ProgressDeadlineExceeded"
        })
    }) {
        return Poll::Pending(format!(
            "rollout stalled: {}",
            stalled["message"]
                .as_str()
                .unwrap_or("progress deadline exceeded")
        ));
    }
    if observed >= generation && updated >= wanted && available >= wanted && old <= 0 {
        Poll::Ready(())
    } else if old > 0 && updated >= wanted {
        Poll::Pending(format!("{old} old replicas pending termination"))
    } else {
        Poll::Pending(format!("{available} of {wanted} replicas available"))
    }
}

/// The load balancer's hostname (or IP) once the cloud controller has made it.
fn load_balancer_address(live: &Value) -> Option<String> {
    let ingress = &live["status"]["loadBalancer"]["ingress"][0];
    ingress["hostname"]
        .as_str()
        .or_else(|| ingress["ip"].as_str())
        .filter(|address| !address.is_empty())
        .map(str::to_string)
}

fn url_host(url: &str) -> Option<String> {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_come_from_arns() {
        assert_eq!(
            cluster_name("arn:aws:eks:us-west-2:123456789012:cluster/iam-postgres").unwrap(),
            "iam-postgres"
        );
        assert!(cluster_name("arn:aws:iam::1:role/x").is_err());
    }

    #[test]
    fn only_declared_labels_are_compared() {
        let declared = json!({"a": "1", "b": "2"});
        let live = [("a", "1"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            declared_labels(Some(&declared), Some(&live)),
            json!({"a": "1"})
        );
    }

    #[test]
    fn environment_values_keep_their_declared_form() {
        let declared = json!({"DB_PORT": 5432, "DB_USER": "app"});
        let live =
            json!([{"name": "DB_PORT", "value": "5432"}, {"name": "DB_USER", "value": "other"}]);
        assert_eq!(
            observed_env(Some(&declared), &live),
            json!({"DB_PORT": 5432, "DB_USER": "other"})
        );
    }

    #[test]
    fn a_rollout_is_done_when_every_replica_of_the_generation_is_available() {
        let live = |observed: i64, available: i64| json!({"spec": {"replicas": 2}, "status": {"observedGeneration": observed, "updatedReplicas": 2, "availableReplicas": available}});
        assert!(matches!(
            deployment_progress(&live(2, 2), 2),
            Poll::Ready(())
        ));
        assert!(matches!(
            deployment_progress(&live(1, 2), 2),
            Poll::Pending(_)
        ));
        assert!(matches!(
            deployment_progress(&live(2, 1), 2),
            Poll::Pending(_)
        ));
        // A pod of the old template is still there.
        let mut rolling = live(2, 2);
        rolling["status"]["replicas"] = json!(3);
        assert!(matches!(deployment_progress(&rolling, 2), Poll::Pending(_)));
    }
}
