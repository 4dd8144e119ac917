//! Discovery: reading what a stack references but does not manage, before the graph is made.
//!
//! A stack may name infrastructure that exists already (`network.existing`: a VPC and its
//! subnets). pwless never creates, changes or deletes it, and nothing of it enters the state:
//! discovery reads it through the AWS API, checks that it suits the stack, and fills the
//! stack's facts ([`Network`]) with the values read, which the graph then holds as literals
//! (Terraform's data sources, read at plan time; a saved plan carries the values it used).
//!
//! Every problem is a [`Diagnostic`] at the line of the stack file that names the resource,
//! with the fix, and all are reported in one run: an id that names nothing in the region, a
//! subnet of another VPC, private subnets in fewer than two availability zones (EKS and an
//! Aurora subnet group both need two:
//! <https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html>,
//! <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/USER_VPC.WorkingWithRDSInstanceinaVPC.html>),
//! a VPC without DNS support or DNS hostnames (the EKS private endpoint and the Aurora
//! endpoint names need both), a database subnet outside the VPC's primary block (the relay's
//! NetworkPolicy admits that block alone).
//!
//! A referenced EKS cluster (`cluster.existing`, [`read_cluster`]) is read the same way; its
//! IAM OIDC provider and Pod Identity Agent add-on are used as they are when they exist and
//! are not the stack's, and are the stack's own otherwise.
//!
//! A referenced Aurora cluster (`database.existing`, [`read_database`]) is read with
//! `DescribeDBClusters` and its subnet group's `DescribeDBSubnetGroups`: pwless creates its
//! users and their privileges in it, and nothing else.
//!
//! The subnets' route tables are not checked: a private subnet without a route to the
//! internet (or to VPC endpoints) leaves the nodes unable to pull images, which `pwless
//! doctor` does not see either.

use aws_config::SdkConfig;

use crate::provider::ProviderError;
use crate::provider::aws::{found, sdk_error};
use crate::spec::Diagnostic;
use crate::spec::cidr::Ipv4Cidr;
use crate::spec::model::{
    Database, DatabaseSubnets, MasterPassword, ReadCluster, ReadDatabase, ReadNetwork, ReadSubnet,
    Reference, Stack,
};

/// Why discovery could not fill in the stack's facts.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// What the stack references is missing or unsuitable: one diagnostic per problem, at the
    /// reference's place in the stack file.
    #[error("{} problem(s) with the resources the stack references", .0.len())]
    Invalid(Vec<Diagnostic>),
    /// The AWS API did not answer (credentials, permissions, the network), with its code.
    #[error("cannot read the resources the stack references: {}", .0.message)]
    Aws(ProviderError),
}

/// Reads what `stack` references and fills in its facts; does nothing for a stack that
/// references nothing. Changes nothing anywhere: it calls only EC2, EKS and RDS `Describe*`
/// actions and IAM's `ListOpenIDConnectProviders` and `ListOpenIDConnectProviderTags`.
pub async fn discover(stack: &mut Stack, config: &SdkConfig) -> Result<(), DiscoverError> {
    let mut problems = Vec::new();
    if !stack.network.is_known() {
        let ec2 = aws_sdk_ec2::Client::new(config);
        match read_network(&ec2, stack).await {
            Ok(read) => stack.network.record_read(read),
            Err(DiscoverError::Invalid(found)) => problems.extend(found),
            Err(error) => return Err(error),
        }
    }
    if !stack.cluster.is_known() {
        match read_cluster(config, stack).await {
            Ok(read) => stack.cluster.record_read(read),
            Err(DiscoverError::Invalid(found)) => problems.extend(found),
            Err(error) => return Err(error),
        }
    }
    let unread: Vec<String> = stack
        .databases
        .iter()
        .filter(|database| !database.is_known())
        .map(|database| database.key.clone())
        .collect();
    for key in unread {
        let Some(database) = stack.database(&key) else {
            continue;
        };
        match read_database(config, stack, database).await {
            Ok(read) => {
                if let Some(database) = stack.database_mut(&key) {
                    database.record_read(read);
                }
            }
            Err(DiscoverError::Invalid(found)) => problems.extend(found),
            Err(error) => return Err(error),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DiscoverError::Invalid(problems))
    }
}

/// Reads the referenced Aurora cluster: `DescribeDBClusters`, and its DB subnet group's VPC
/// (`DescribeDBSubnetGroups`).
///
/// Refused: a cluster that does not exist in the region; an engine other than
/// `aurora-postgresql`; IAM database authentication off, unless the stack says
/// `enable_iam_auth: true` (pwless changes nothing else of a cluster it references; turning it
/// on changes nothing for the password users already there: only a member of `rds_iam` must
/// log in with a token,
/// <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.DBAccounts.html>);
/// a cluster that is not `available`; one in another VPC than the network's; one with subnets
/// outside the VPC's primary block while the relay is used (its NetworkPolicy admits that
/// block alone); and, when the database has users, one whose master password pwless cannot
/// find (not managed by RDS in Secrets Manager, and no `master_password.env`), or a user named
/// as its master.
async fn read_database(
    config: &SdkConfig,
    stack: &Stack,
    database: &Database,
) -> Result<ReadDatabase, DiscoverError> {
    let Some(existing) = &database.existing else {
        return Err(DiscoverError::Invalid(Vec::new()));
    };
    let reference = &existing.cluster_identifier;
    let key_path = &database.path;
    let region = &stack.region;
    let rds = aws_sdk_rds::Client::new(config);
    let answer = found(
        rds.describe_db_clusters()
            .db_cluster_identifier(&reference.id)
            .send()
            .await
            .map_err(sdk_error(
                "read the Aurora cluster (rds:DescribeDBClusters)",
            )),
    )
    .map_err(DiscoverError::Aws)?;
    let Some(cluster) = answer
        .as_ref()
        .and_then(|answer| answer.db_clusters().first())
    else {
        return Err(DiscoverError::Invalid(vec![at(
            reference,
            format!(
                "Aurora cluster `{}` does not exist in {region}",
                reference.id
            ),
            "check the identifier and the stack's `region` (`aws rds describe-db-clusters --query 'DBClusters[].DBClusterIdentifier'` lists the region's clusters)",
        )]));
    };
    let id = &reference.id;
    let engine = cluster.engine().unwrap_or_default();
    if engine != "aurora-postgresql" {
        // Nothing else about it matters.
        return Err(DiscoverError::Invalid(vec![at(
            reference,
            format!(
                "`{id}` is an RDS cluster of engine `{engine}`, not an Aurora PostgreSQL cluster (`aurora-postgresql`)"
            ),
            "name an Aurora PostgreSQL cluster: pwless manages PostgreSQL users",
        )]));
    }
    let mut problems = Vec::new();
    let status = cluster.status().unwrap_or("in an unknown state");
    if status != "available" {
        problems.push(at(
            reference,
            format!("Aurora cluster `{id}` is {status}, not available"),
            &format!("wait until it is available (`aws rds describe-db-clusters --db-cluster-identifier {id} --query 'DBClusters[0].Status'`), then plan again"),
        ));
    }
    let iam_auth = cluster.iam_database_authentication_enabled() == Some(true);
    if !iam_auth && !existing.enable_iam_auth {
        problems.push(at(
            reference,
            format!("Aurora cluster `{id}` has IAM database authentication off, so no token logs in to it"),
            &format!("turn it on: `aws rds modify-db-cluster --db-cluster-identifier {id} --enable-iam-database-authentication --apply-immediately`, or let this stack turn it on in place with `enable_iam_auth: true` under `{key_path}.existing`; users that log in with passwords today keep doing so: only members of `rds_iam`, the users pwless makes, must use tokens"),
        ));
    }
    let subnet_group = cluster.db_subnet_group().unwrap_or_default();
    let group = if subnet_group.is_empty() {
        None
    } else {
        rds.describe_db_subnet_groups()
            .db_subnet_group_name(subnet_group)
            .send()
            .await
            .map_err(sdk_error(
                "read the Aurora cluster's subnet group (rds:DescribeDBSubnetGroups)",
            ))
            .map_err(DiscoverError::Aws)?
            .db_subnet_groups()
            .first()
            .cloned()
    };
    let vpc_id = group
        .as_ref()
        .and_then(|group| group.vpc_id())
        .unwrap_or_default()
        .to_string();
    // The relay's NetworkPolicy admits the VPC's primary block alone: the cluster's subnets
    // must be in it.
    if crate::graph::uses_relay(database)
        && let Some(group) = &group
        && let Some(network) = stack.network.read()
        && vpc_id == network.vpc_id
    {
        let ids: Vec<String> = group
            .subnets()
            .iter()
            .filter_map(|subnet| subnet.subnet_identifier())
            .map(str::to_string)
            .collect();
        let subnets = aws_sdk_ec2::Client::new(config)
            .describe_subnets()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("subnet-id")
                    .set_values(Some(ids))
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error(
                "read the Aurora cluster's subnets (ec2:DescribeSubnets)",
            ))
            .map_err(DiscoverError::Aws)?;
        let outside: Vec<String> = subnets
            .subnets()
            .iter()
            .filter(|subnet| {
                subnet
                    .cidr_block()
                    .and_then(|block| block.parse::<Ipv4Cidr>().ok())
                    .is_some_and(|block| !network.cidr.contains(&block))
            })
            .map(|subnet| {
                format!(
                    "{} ({})",
                    subnet.subnet_id().unwrap_or("?"),
                    subnet.cidr_block().unwrap_or("?")
                )
            })
            .collect();
        if !outside.is_empty() {
            problems.push(at(
                reference,
                format!(
                    "Aurora cluster `{id}` has subnets outside the VPC's primary block {}, which is all the database relay may reach: {}",
                    network.cidr,
                    outside.join(", ")
                ),
                &format!("set `{key_path}.admin_access: endpoint` and reach the cluster through a tunnel of your own"),
            ));
        }
    }
    if let Some(network) = &stack.network.existing
        && vpc_id != network.vpc_id.id
    {
        problems.push(at(
            reference,
            format!(
                "Aurora cluster `{id}` is in VPC `{}`, not in `{}` (network.existing.vpc_id)",
                if vpc_id.is_empty() { "?" } else { &vpc_id },
                network.vpc_id.id
            ),
            "reference the VPC the cluster is in under `network.existing`: the service accounts' pods and the database relay reach it inside one VPC",
        ));
    }
    let master_username = cluster.master_username().unwrap_or_default().to_string();
    let master_secret_arn = cluster
        .master_user_secret()
        .and_then(|secret| secret.secret_arn())
        .map(str::to_string);
    let users = &database.users;
    if !users.is_empty()
        && master_secret_arn.is_none()
        && database.master_password == MasterPassword::Managed
    {
        problems.push(at(
            reference,
            format!("Aurora cluster `{id}`'s master password is not kept by RDS in Secrets Manager, and pwless logs in as the master user to manage the database users"),
            &format!("give it at apply time: `master_password: {{env: VAR_NAME}}` under `{key_path}`, with VAR_NAME set in pwless's environment (never stored). (Letting RDS manage it instead, `aws rds modify-db-cluster --db-cluster-identifier {id} --manage-master-user-password --apply-immediately`, makes RDS generate a new master password, which breaks whatever uses the current one.)"),
        ));
    }
    if let Some(user) = users.iter().find(|user| user.name == master_username) {
        problems.push(at(
            reference,
            format!("`{}` is the master user of Aurora cluster `{id}`, and cannot be one of the stack's users", user.name),
            "name the application's user otherwise: pwless makes its users log in with IAM tokens only, and never touches the master user",
        ));
    }
    let (Some(arn), Some(endpoint), Some(port), Some(resource_id)) = (
        cluster.db_cluster_arn(),
        cluster.endpoint(),
        cluster.port().and_then(|port| u16::try_from(port).ok()),
        cluster.db_cluster_resource_id(),
    ) else {
        problems.push(at(
            reference,
            format!("Aurora cluster `{id}` reports no ARN, endpoint, port or resource id"),
            "check the cluster in the RDS console; pwless needs its endpoint and resource id",
        ));
        return Err(DiscoverError::Invalid(problems));
    };
    if !problems.is_empty() {
        return Err(DiscoverError::Invalid(problems));
    }
    Ok(ReadDatabase {
        cluster_identifier: id.clone(),
        arn: arn.to_string(),
        endpoint: endpoint.to_string(),
        port,
        reader_endpoint: cluster.reader_endpoint().map(str::to_string),
        cluster_resource_id: resource_id.to_string(),
        engine_version: cluster.engine_version().unwrap_or_default().to_string(),
        vpc_id,
        master_username,
        master_secret_arn,
        iam_auth,
    })
}

/// Reads the referenced EKS cluster: `DescribeCluster`, and the IAM OIDC provider of its
/// issuer (`ListOpenIDConnectProviders`, `ListOpenIDConnectProviderTags`), and with Pod
/// Identity entries its agent add-on (`DescribeAddon`).
///
/// Refused: a cluster that does not exist in the region, one that is not `ACTIVE` or
/// `UPDATING`, one in another VPC than the network's, one without an OIDC issuer, and, when
/// the stack has Kubernetes objects, one whose authentication mode lacks EKS access entries
/// (`CONFIG_MAP` only: pwless reaches the Kubernetes API as a principal with an access entry,
/// <https://docs.aws.amazon.com/eks/latest/userguide/grant-k8s-access.html>).
async fn read_cluster(config: &SdkConfig, stack: &Stack) -> Result<ReadCluster, DiscoverError> {
    let Some(existing) = &stack.cluster.existing else {
        return Err(DiscoverError::Invalid(Vec::new()));
    };
    let reference = &existing.name;
    let region = &stack.region;
    let eks = aws_sdk_eks::Client::new(config);
    let answer = found(
        eks.describe_cluster()
            .name(&reference.id)
            .send()
            .await
            .map_err(sdk_error("read the EKS cluster (eks:DescribeCluster)")),
    )
    .map_err(DiscoverError::Aws)?;
    let Some(cluster) = answer.as_ref().and_then(|answer| answer.cluster()) else {
        return Err(DiscoverError::Invalid(vec![at(
            reference,
            format!("EKS cluster `{}` does not exist in {region}", reference.id),
            "check the name and the stack's `region` (`aws eks list-clusters` lists the region's clusters)",
        )]));
    };
    let mut problems = Vec::new();
    let status = cluster.status().map(|status| status.as_str().to_string());
    if !matches!(status.as_deref(), Some("ACTIVE" | "UPDATING")) {
        problems.push(at(
            reference,
            format!(
                "EKS cluster `{}` is {}, not ACTIVE",
                reference.id,
                status.as_deref().unwrap_or("in an unknown state")
            ),
            "wait until it is ACTIVE (`aws eks describe-cluster --query cluster.status`), then plan again",
        ));
    }
    let vpc_id = cluster
        .resources_vpc_config()
        .and_then(|config| config.vpc_id())
        .unwrap_or_default()
        .to_string();
    if let Some(network) = &stack.network.existing
        && vpc_id != network.vpc_id.id
    {
        problems.push(at(
            reference,
            format!(
                "EKS cluster `{}` is in VPC `{}`, not in `{}` (network.existing.vpc_id)",
                reference.id,
                if vpc_id.is_empty() { "?" } else { &vpc_id },
                network.vpc_id.id
            ),
            "name the cluster's own VPC and subnets under `network.existing`: the database and its security group go where the cluster's pods are",
        ));
    }
    let has_objects =
        !stack.access.is_empty() || stack.app.is_some() || crate::graph::stack_uses_relay(stack);
    let mode = cluster
        .access_config()
        .and_then(|config| config.authentication_mode())
        .map(|mode| mode.as_str().to_string());
    if has_objects && mode.as_deref() == Some("CONFIG_MAP") {
        problems.push(at(
            reference,
            format!(
                "EKS cluster `{}` takes its Kubernetes users from the aws-auth ConfigMap only (authentication mode CONFIG_MAP), and pwless reaches the Kubernetes API through EKS access entries",
                reference.id
            ),
            &format!("let the cluster use access entries too (its owners' decision; existing aws-auth users keep working): `aws eks update-cluster-config --name {} --access-config authenticationMode=API_AND_CONFIG_MAP`, and give pwless's principal an access entry", reference.id),
        ));
    }
    let issuer = cluster
        .identity()
        .and_then(|identity| identity.oidc())
        .and_then(|oidc| oidc.issuer())
        .map(str::to_string);
    let (Some(issuer), Some(arn), Some(version)) = (issuer, cluster.arn(), cluster.version())
    else {
        problems.push(at(
            reference,
            format!(
                "EKS cluster `{}` reports no OIDC issuer, ARN or version",
                reference.id
            ),
            "check the cluster in the EKS console; pwless needs its OIDC issuer for IRSA",
        ));
        return Err(DiscoverError::Invalid(problems));
    };
    if !problems.is_empty() {
        return Err(DiscoverError::Invalid(problems));
    }
    let oidc_provider_arn = oidc_provider_of(config, stack, &issuer).await?;
    let pod_identity_agent = if stack
        .access
        .iter()
        .any(|entry| entry.identity == crate::spec::model::Identity::PodIdentity)
    {
        foreign_agent(&eks, stack, &reference.id).await?
    } else {
        false
    };
    Ok(ReadCluster {
        name: reference.id.clone(),
        arn: arn.to_string(),
        endpoint: cluster.endpoint().unwrap_or_default().to_string(),
        oidc_issuer: issuer,
        vpc_id,
        version: version.to_string(),
        oidc_provider_arn,
        pod_identity_agent,
    })
}

/// The ARN of the IAM OIDC provider for `issuer` when one exists that is not this stack's;
/// `None` when there is none (the stack creates it) or it is this stack's (its tags say so:
/// it made it before, and manages it still).
async fn oidc_provider_of(
    config: &SdkConfig,
    stack: &Stack,
    issuer: &str,
) -> Result<Option<String>, DiscoverError> {
    let iam = aws_sdk_iam::Client::new(config);
    let host = issuer.trim_start_matches("https://").trim_end_matches('/');
    let providers = iam
        .list_open_id_connect_providers()
        .send()
        .await
        .map_err(sdk_error(
            "list the IAM OIDC providers (iam:ListOpenIDConnectProviders)",
        ))
        .map_err(DiscoverError::Aws)?;
    let Some(arn) = providers
        .open_id_connect_provider_list()
        .iter()
        .filter_map(|provider| provider.arn())
        .find(|arn| arn.ends_with(&format!(":oidc-provider/{host}")))
    else {
        return Ok(None);
    };
    let tags = iam
        .list_open_id_connect_provider_tags()
        .open_id_connect_provider_arn(arn)
        .send()
        .await
        .map_err(sdk_error(
            "read the OIDC provider's tags (iam:ListOpenIDConnectProviderTags)",
        ))
        .map_err(DiscoverError::Aws)?;
    let tag = |key: &str| {
        tags.tags()
            .iter()
            .find(|tag| tag.key() == key)
            .map(|tag| tag.value().to_string())
    };
    let ours = tag("pwless:stack").as_deref() == Some(stack.name.as_str())
        && tag("pwless:address") == Some(crate::graph::address::oidc_provider());
    Ok((!ours).then(|| arn.to_string()))
}

/// Whether the cluster has the Pod Identity Agent add-on installed by someone else than this
/// stack (its `pwless:stack` tag names another, or none).
async fn foreign_agent(
    eks: &aws_sdk_eks::Client,
    stack: &Stack,
    cluster: &str,
) -> Result<bool, DiscoverError> {
    let answer = found(
        eks.describe_addon()
            .cluster_name(cluster)
            .addon_name(crate::graph::POD_IDENTITY_AGENT_ADDON)
            .send()
            .await
            .map_err(sdk_error(
                "read the Pod Identity Agent add-on (eks:DescribeAddon)",
            )),
    )
    .map_err(DiscoverError::Aws)?;
    Ok(answer
        .and_then(|answer| answer.addon().cloned())
        .is_some_and(|addon| {
            addon
                .tags()
                .and_then(|tags| tags.get("pwless:stack"))
                .is_none_or(|owner| owner != &stack.name)
        }))
}

async fn read_network(
    ec2: &aws_sdk_ec2::Client,
    stack: &Stack,
) -> Result<ReadNetwork, DiscoverError> {
    let Some(existing) = &stack.network.existing else {
        return Err(DiscoverError::Invalid(Vec::new()));
    };
    let region = &stack.region;
    let mut problems = Vec::new();
    let vpc_ref = &existing.vpc_id;

    let vpc = found(
        ec2.describe_vpcs()
            .vpc_ids(&vpc_ref.id)
            .send()
            .await
            .map_err(sdk_error("read the VPC (ec2:DescribeVpcs)")),
    )
    .map_err(DiscoverError::Aws)?
    .and_then(|answer| answer.vpcs().first().cloned());
    let vpc_cidr = match &vpc {
        None => {
            problems.push(at(
                vpc_ref,
                format!("VPC `{}` does not exist in {region}", vpc_ref.id),
                "check the id, the stack's `region`, and that the credentials are the VPC's account (`aws sts get-caller-identity`)",
            ));
            None
        }
        Some(vpc) => {
            let cidr = vpc
                .cidr_block()
                .and_then(|block| block.parse::<Ipv4Cidr>().ok());
            if cidr.is_none() {
                problems.push(at(
                    vpc_ref,
                    format!("VPC `{}` has no IPv4 block", vpc_ref.id),
                    "use a VPC with an IPv4 block: pwless's security group rules and relay policy are IPv4",
                ));
            }
            for (attribute, flag) in [
                (
                    aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
                    "--enable-dns-support",
                ),
                (
                    aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
                    "--enable-dns-hostnames",
                ),
            ] {
                let answer = ec2
                    .describe_vpc_attribute()
                    .vpc_id(&vpc_ref.id)
                    .attribute(attribute.clone())
                    .send()
                    .await
                    .map_err(sdk_error(
                        "read the VPC's DNS settings (ec2:DescribeVpcAttribute)",
                    ))
                    .map_err(DiscoverError::Aws)?;
                let on = answer
                    .enable_dns_support()
                    .or(answer.enable_dns_hostnames())
                    .and_then(|value| value.value())
                    .unwrap_or(false);
                if !on {
                    problems.push(at(
                        vpc_ref,
                        format!("VPC `{}` has `{}` off", vpc_ref.id, attribute.as_str()),
                        &format!("EKS's private endpoint and the Aurora endpoint names need DNS support and DNS hostnames; pwless never changes a VPC it references, so turn it on yourself: `aws ec2 modify-vpc-attribute --vpc-id {} {flag}`", vpc_ref.id),
                    ));
                }
            }
            cidr
        }
    };

    let references: Vec<&Reference> = existing
        .private_subnet_ids
        .iter()
        .chain(&existing.public_subnet_ids)
        .collect();
    let ids: Vec<String> = references
        .iter()
        .map(|reference| reference.id.clone())
        .collect();
    // A filter, not `SubnetIds`: a missing id is then one absent answer (each reported at its
    // own line), not one error for the whole call.
    let subnets = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("subnet-id")
                .set_values(Some(ids))
                .build(),
        )
        .send()
        .await
        .map_err(sdk_error("read the subnets (ec2:DescribeSubnets)"))
        .map_err(DiscoverError::Aws)?;
    let read = |reference: &Reference, problems: &mut Vec<Diagnostic>| {
        let Some(subnet) = subnets
            .subnets()
            .iter()
            .find(|subnet| subnet.subnet_id() == Some(reference.id.as_str()))
        else {
            problems.push(at(
                reference,
                format!("subnet `{}` does not exist in {region}", reference.id),
                "check the id and the stack's `region` (`aws ec2 describe-subnets --filters Name=vpc-id,Values=<vpc>` lists the VPC's subnets)",
            ));
            return None;
        };
        if vpc.is_some() && subnet.vpc_id() != Some(vpc_ref.id.as_str()) {
            problems.push(at(
                reference,
                format!(
                    "subnet `{}` is in VPC `{}`, not in `{}` (network.existing.vpc_id)",
                    reference.id,
                    subnet.vpc_id().unwrap_or("?"),
                    vpc_ref.id
                ),
                "list subnets of the stack's VPC only",
            ));
            return None;
        }
        let cidr = subnet
            .cidr_block()
            .and_then(|block| block.parse::<Ipv4Cidr>().ok());
        let (Some(cidr), Some(zone)) = (cidr, subnet.availability_zone()) else {
            problems.push(at(
                reference,
                format!("subnet `{}` has no IPv4 block or zone", reference.id),
                "use subnets with an IPv4 block",
            ));
            return None;
        };
        Some(ReadSubnet {
            id: reference.id.clone(),
            availability_zone: zone.to_string(),
            cidr,
        })
    };
    let private: Vec<Option<ReadSubnet>> = existing
        .private_subnet_ids
        .iter()
        .map(|reference| read(reference, &mut problems))
        .collect();
    let public: Vec<Option<ReadSubnet>> = existing
        .public_subnet_ids
        .iter()
        .map(|reference| read(reference, &mut problems))
        .collect();

    // The tiers the created databases go in need two zones, as the private subnets do for EKS.
    let tier = |subnets: DatabaseSubnets| match subnets {
        DatabaseSubnets::Private => (&existing.private_subnet_ids, &private, "private"),
        DatabaseSubnets::Public => (&existing.public_subnet_ids, &public, "public"),
    };
    let created = || {
        stack
            .databases
            .iter()
            .filter(|database| database.existing.is_none())
    };
    let mut tiers = vec![tier(DatabaseSubnets::Private)];
    if created().any(|database| database.subnets == DatabaseSubnets::Public) {
        tiers.push(tier(DatabaseSubnets::Public));
    }
    for (references, subnets, tier) in tiers {
        let zones: std::collections::BTreeSet<&str> = subnets
            .iter()
            .flatten()
            .map(|subnet| subnet.availability_zone.as_str())
            .collect();
        if zones.len() == 1
            && subnets.iter().all(Option::is_some)
            && let Some(first) = references.first()
            && !problems.iter().any(|problem| problem.path == first.path)
        {
            problems.push(at(
                first,
                format!(
                    "the {tier} subnets are all in {}; EKS and Aurora need subnets in at least two availability zones",
                    zones.first().copied().unwrap_or("one zone")
                ),
                &format!("add a {tier} subnet of another zone of the VPC"),
            ));
        }
    }
    // A relay's NetworkPolicy admits the VPC's primary block: a database it reaches must be in
    // it.
    let mut relayed: Vec<(DatabaseSubnets, &str)> = Vec::new();
    for database in created().filter(|database| crate::graph::uses_relay(database)) {
        if !relayed
            .iter()
            .any(|(subnets, _)| *subnets == database.subnets)
        {
            relayed.push((database.subnets, &database.path));
        }
    }
    for (subnets, at_key) in relayed {
        let Some(vpc_cidr) = vpc_cidr else { break };
        let (references, read, _) = tier(subnets);
        for (reference, subnet) in references.iter().zip(read) {
            if let Some(subnet) = subnet
                && !vpc_cidr.contains(&subnet.cidr)
                && !problems
                    .iter()
                    .any(|problem| problem.path == reference.path)
            {
                problems.push(at(
                    reference,
                    format!(
                        "subnet `{}` ({}) lies outside the VPC's primary block {vpc_cidr}, which is all the database relay may reach",
                        reference.id, subnet.cidr
                    ),
                    &format!("list database subnets of the primary block, or set `{at_key}.admin_access: endpoint` and reach the database through a tunnel of your own"),
                ));
            }
        }
    }

    match (problems.is_empty(), vpc_cidr) {
        (true, Some(cidr)) => Ok(ReadNetwork {
            vpc_id: vpc_ref.id.clone(),
            cidr,
            private: private.into_iter().flatten().collect(),
            public: public.into_iter().flatten().collect(),
        }),
        _ => Err(DiscoverError::Invalid(problems)),
    }
}

fn at(reference: &Reference, message: String, help: &str) -> Diagnostic {
    Diagnostic {
        path: reference.path.clone(),
        span: reference.span,
        message,
        help: Some(help.to_string()),
        secret: false,
    }
}
