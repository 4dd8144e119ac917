//! The AWS provider: one SDK client per service, configured from the standard chain
//! (environment, profiles, SSO, web identity, container credentials, `AWS_ENDPOINT_URL`), with
//! the stack's region — never a silent default.

mod ec2;
mod eks;
mod eks_access;
pub(crate) mod eks_pod_identity;
pub(crate) mod iam;
pub(crate) mod rds;

use std::time::Duration;

use aws_config::BehaviorVersion;
// Every service crate re-exports the same smithy error types.
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::OnceCell;

use super::{Applied, ErrorKind, Inputs, Provider, ProviderError};
use crate::graph::{Provider as Owner, ResourceKind};
use crate::plan::Observed;
use crate::state::ResourceState;

/// How long one create/delete may wait for its resource (EKS takes ~10 min, Aurora ~15).
pub(crate) const READY_LIMIT: Duration = Duration::from_secs(40 * 60);
/// How long to retry a call that fails for a passing reason.
pub(crate) const RETRY_LIMIT: Duration = Duration::from_secs(5 * 60);

pub struct AwsProvider {
    pub(crate) ec2: aws_sdk_ec2::Client,
    /// EC2 without the SDK's own retries, for the creates that are not idempotent (no client
    /// token, no unique name): a retried call whose first answer was lost would make a second
    /// resource. `ec2::create_once` looks for the resource before it sends such a call again.
    pub(crate) ec2_once: aws_sdk_ec2::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) eks: aws_sdk_eks::Client,
    pub(crate) rds: aws_sdk_rds::Client,
    pub(crate) sts: aws_sdk_sts::Client,
    pub(crate) stack: String,
    account: OnceCell<String>,
}

impl AwsProvider {
    /// Clients for `region` from the standard configuration chain.
    pub async fn new(stack: &str, region: &str) -> Self {
        Self::from_config(stack, &load_config(region).await)
    }

    pub fn from_config(stack: &str, config: &aws_config::SdkConfig) -> Self {
        let once = config
            .to_builder()
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        AwsProvider {
            ec2: aws_sdk_ec2::Client::new(config),
            ec2_once: aws_sdk_ec2::Client::new(&once),
            iam: aws_sdk_iam::Client::new(config),
            eks: aws_sdk_eks::Client::new(config),
            rds: aws_sdk_rds::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            stack: stack.to_string(),
            account: OnceCell::new(),
        }
    }

    /// The account the credentials belong to (STS `GetCallerIdentity`, asked once).
    pub async fn account(&self) -> Result<String, ProviderError> {
        self.account
            .get_or_try_init(|| async {
                let identity = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(sdk_error("get the caller identity"))?;
                identity
                    .account()
                    .map(str::to_string)
                    .ok_or_else(|| ProviderError::permanent("STS returned no account id"))
            })
            .await
            .cloned()
    }
}

/// How many times the SDK sends a call that failed for a passing reason (throttling, a 5xx,
/// a dropped connection), backing off with jitter: the SDK's default of 3 fails a run of a
/// few hundred calls on a bad day (Terraform's AWS provider retries up to 25 times). The
/// creates that must not be sent twice blind bypass this (`AwsProvider::ec2_once`).
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// The standard AWS configuration chain, in `region` (never a default one), with
/// [`MAX_ATTEMPTS`] standard-mode retries.
pub async fn load_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .load()
        .await
}

/// Resolves the credentials of `config` once, before any call, so a missing credential is one
/// plain message rather than one per resource. The error names the sources the standard chain
/// tried, on one line.
pub async fn check_credentials(config: &aws_config::SdkConfig) -> Result<(), String> {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = config.credentials_provider() else {
        return Err(no_credentials("no credential provider is configured"));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(error) => Err(no_credentials(&crate::errors::chain(&error))),
    }
}

/// The one message for missing credentials: the SDK's account of what it tried, on one line.
fn no_credentials(detail: &str) -> String {
    let detail: Vec<&str> = detail.split_whitespace().collect();
    format!(
        "no usable AWS credentials ({}); set them the standard way (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO, web identity); nothing was changed",
        detail.join(" ")
    )
}

/// Which service module handles a kind.
#[derive(Clone, Copy)]
enum Service {
    Ec2,
    Iam,
    Eks,
    EksAccess,
    EksPodIdentity,
    Rds,
}

fn service(kind: ResourceKind) -> Result<Service, ProviderError> {
    use ResourceKind::*;
    match kind {
        Vpc
        | InternetGateway
        | Subnet
        | ElasticIp
        | NatGateway
        | RouteTable
        | RouteTableAssociation
        | SecurityGroup
        | SecurityGroupRule => Ok(Service::Ec2),
        IamRole | IamRolePolicyAttachment | IamRolePolicy | OidcProvider => Ok(Service::Iam),
        EksCluster | EksNodeGroup => Ok(Service::Eks),
        EksAccessEntry => Ok(Service::EksAccess),
        EksAddon | EksPodIdentityAssociation => Ok(Service::EksPodIdentity),
        DbSubnetGroup | RdsCluster | RdsClusterIamAuth | RdsClusterInstance => Ok(Service::Rds),
        other => Err(unsupported(other)),
    }
}

impl AwsProvider {
    /// The create of `kind`, by its service.
    async fn create_by_service(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Applied, ProviderError> {
        match service(kind)? {
            Service::Ec2 => ec2::create(self, address, kind, inputs).await,
            Service::Iam => iam::create(self, kind, inputs).await,
            Service::Eks => eks::create(self, kind, inputs).await,
            Service::EksAccess => eks_access::create(self, inputs).await,
            Service::EksPodIdentity => eks_pod_identity::create(self, kind, inputs).await,
            Service::Rds => rds::create(self, kind, inputs).await,
        }
    }
}

impl Provider for AwsProvider {
    fn supports(&self, kind: ResourceKind) -> bool {
        kind.provider() == Owner::Aws
    }

    /// Creates it; an "already exists" answer for a resource that is this stack's own (a
    /// create whose answer was lost and that the SDK sent again, or that a dead run made) is
    /// adopted, and one that is not is refused: `adopt` checks the owner ([`check_owner`]) of
    /// what it finds by name, and finds by tags what has no unique name.
    async fn create(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Applied, ProviderError> {
        match self.create_by_service(address, kind, inputs).await {
            Err(error) if error.is_already_exists() => {
                // Not found after all (gone meanwhile, or the code meant something else
                // here): the service's own answer stands.
                Ok(self.adopt(address, kind, inputs).await?.ok_or(error)?)
            }
            other => other,
        }
    }

    async fn read(&self, resource: &ResourceState) -> Result<Observed, ProviderError> {
        match service(resource.kind)? {
            Service::Ec2 => ec2::read(self, resource).await,
            Service::Iam => iam::read(self, resource).await,
            Service::Eks => eks::read(self, resource).await,
            Service::EksAccess => eks_access::read(self, resource).await,
            Service::EksPodIdentity => eks_pod_identity::read(self, resource).await,
            Service::Rds => rds::read(self, resource).await,
        }
    }

    async fn update(
        &self,
        resource: &ResourceState,
        inputs: &Inputs,
        changed: &[String],
    ) -> Result<Applied, ProviderError> {
        match service(resource.kind)? {
            Service::Ec2 => ec2::update(self, resource, inputs, changed).await,
            Service::Iam => iam::update(self, resource, inputs, changed).await,
            Service::Eks => eks::update(self, resource, inputs, changed).await,
            Service::EksAccess => eks_access::update(self, resource, inputs, changed).await,
            Service::EksPodIdentity => {
                eks_pod_identity::update(self, resource, inputs, changed).await
            }
            Service::Rds => rds::update(self, resource, inputs, changed).await,
        }
    }

    async fn delete(&self, resource: &ResourceState) -> Result<(), ProviderError> {
        match service(resource.kind)? {
            Service::Ec2 => ec2::delete(self, resource).await,
            Service::Iam => iam::delete(self, resource).await,
            Service::Eks => eks::delete(self, resource).await,
            Service::EksAccess => eks_access::delete(self, resource).await,
            Service::EksPodIdentity => eks_pod_identity::delete(self, resource).await,
            Service::Rds => rds::delete(self, resource).await,
        }
    }

    async fn adopt(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Option<Applied>, ProviderError> {
        match service(kind)? {
            Service::Ec2 => ec2::adopt(self, address, kind, inputs).await,
            Service::Iam => iam::adopt(self, address, kind, inputs).await,
            Service::Eks => eks::adopt(self, address, kind, inputs).await,
            Service::EksAccess => eks_access::adopt(self, kind, inputs).await,
            Service::EksPodIdentity => eks_pod_identity::adopt(self, address, kind, inputs).await,
            Service::Rds => rds::adopt(self, address, kind, inputs).await,
        }
    }
}

/// An update asked for an input the cloud cannot change on a live resource: the planner
/// should have planned a replacement.
pub(crate) fn not_in_place(kind: ResourceKind, name: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "{kind} input `{name}` cannot change in place (the planner should have replaced it)"
    ))
}

fn unsupported(kind: ResourceKind) -> ProviderError {
    ProviderError::permanent(format!("{kind} is not an AWS resource"))
}

/// Error codes that mean "try again": throttling and passing service trouble.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
];

/// Maps an SDK error to a [`ProviderError`], keeping the service's code.
pub(crate) fn sdk_error<E>(
    action: &'static str,
) -> impl FnOnce(SdkError<E, aws_sdk_ec2::config::http::HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |error| {
        if let Some(message) = credentials_problem(&error) {
            // Retrying does not make credentials appear: say so at once.
            return ProviderError::permanent(format!(
                "cannot {action}: no usable AWS credentials ({message}); set them the standard way (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO, web identity)"
            ));
        }
        let code = error.code().map(str::to_string);
        // No answer, an answer cut short, or the service's own trouble (5xx): the call may or
        // may not have taken effect, and may be tried again (after looking, for a create that
        // is not idempotent).
        let transport = matches!(
            error,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ) || error
            .raw_response()
            .is_some_and(|response| response.status().is_server_error());
        let retryable = transport
            || code
                .as_deref()
                .is_some_and(|code| RETRYABLE_CODES.contains(&code));
        // A service's answer reads best as its code and message; anything else (a transport
        // failure, an unparsable answer) needs the whole error chain.
        let message = match (&error, code.as_deref()) {
            (SdkError::ServiceError(_), Some(code)) => match error.message() {
                Some(detail) => format!("cannot {action}: {code}: {detail}"),
                None => format!("cannot {action}: {code}"),
            },
            // (the cause chain only: the SDK's DisplayErrorContext appends a Debug dump)
            _ => format!("cannot {action}: {}", crate::errors::chain(&error)),
        };
        ProviderError {
            kind: if retryable {
                ErrorKind::Retryable
            } else {
                ErrorKind::Permanent
            },
            code,
            message,
        }
    }
}

/// The credentials error in an SDK error's chain, as short text (the SDK's own rendering
/// carries whole raw responses).
fn credentials_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(problem) =
            current.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
        {
            let mut text = problem.to_string();
            if let Some(cause) = std::error::Error::source(problem) {
                text.push_str(": ");
                text.push_str(&cause.to_string());
            }
            return Some(text);
        }
        source = current.source();
    }
    None
}

/// The codes by which AWS says what a create would make is there already: a unique name taken
/// (IAM, RDS, EKS, EC2 security groups), a subnet's route table association, a security group
/// rule. After a lost answer that the SDK sent again, it is this stack's own.
const ALREADY_EXISTS_CODES: &[&str] = &[
    "EntityAlreadyExists",
    "DBClusterAlreadyExistsFault",
    "DBInstanceAlreadyExists",
    "DBSubnetGroupAlreadyExists",
    "DBSubnetGroupAlreadyExistsFault",
    "ResourceInUseException",
    "InvalidGroup.Duplicate",
    "Resource.AlreadyAssociated",
    "InvalidPermission.Duplicate",
];

/// Refuses to adopt `what`, found by its unique name, unless its tags (a JSON object, as the
/// services' `tags_of` give them) mark it as this stack's resource at `address`: pwless never
/// takes over a resource another stack, or someone outside pwless, made under the same name.
pub(crate) fn check_owner(
    what: &str,
    tags: &serde_json::Value,
    stack: &str,
    address: &str,
) -> Result<(), ProviderError> {
    let tag = |key: &str| tags.get(key).and_then(serde_json::Value::as_str);
    let message = match (tag("pwless:stack"), tag("pwless:address")) {
        (Some(owner), Some(at)) if owner == stack && at == address => return Ok(()),
        (Some(owner), at) => format!(
            "{what} already exists and is not this stack's: its tags say pwless:stack `{owner}`, pwless:address `{}`. pwless leaves it alone: give the stack another name for it",
            at.unwrap_or("(none)")
        ),
        (None, _) => format!(
            "{what} already exists and was not made by pwless (it has no pwless:stack tag): pwless leaves it alone; give the stack another name for it, or delete it if it is a leftover"
        ),
    };
    Err(ProviderError {
        kind: ErrorKind::Taken,
        code: None,
        message,
    })
}

impl ProviderError {
    /// Whether the service said a create's unique name is taken.
    pub(crate) fn is_already_exists(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| ALREADY_EXISTS_CODES.contains(&code))
    }

    /// Whether the service said the thing does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|code| {
            code.contains("NotFound")
                || code == "NoSuchEntity"
                || code == "ResourceNotFoundException"
        })
    }

    /// Treats these codes as passing (e.g. `DependencyViolation` while ENIs drain).
    pub(crate) fn retry_on(mut self, codes: &[&str]) -> Self {
        if self
            .code
            .as_deref()
            .is_some_and(|code| codes.contains(&code))
        {
            self.kind = ErrorKind::Retryable;
        }
        self
    }
}

/// `Ok(None)` for a not-found error, the value otherwise.
pub(crate) fn found<T>(result: Result<T, ProviderError>) -> Result<Option<T>, ProviderError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

pub(crate) fn missing_field(what: &str) -> ProviderError {
    ProviderError::permanent(format!("the AWS answer lacks {what}"))
}
