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
//! Not read yet (issue 18's next steps): an existing EKS cluster, existing Aurora clusters.
//! The subnets' route tables are not checked: a private subnet without a route to the
//! internet (or to VPC endpoints) leaves the nodes unable to pull images, which `pwless
//! doctor` does not see either.

use aws_config::SdkConfig;

use crate::provider::ProviderError;
use crate::provider::aws::{found, sdk_error};
use crate::spec::Diagnostic;
use crate::spec::cidr::Ipv4Cidr;
use crate::spec::model::{DatabaseSubnets, Network, ReadNetwork, ReadSubnet, Reference, Stack};

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
/// references nothing. Calls only `Describe*` actions.
pub async fn discover(stack: &mut Stack, config: &SdkConfig) -> Result<(), DiscoverError> {
    let Some(existing) = &stack.network.existing else {
        return Ok(());
    };
    if existing.read.is_some() {
        return Ok(());
    }
    let ec2 = aws_sdk_ec2::Client::new(config);
    let read = read_network(&ec2, stack).await?;
    fill(&mut stack.network, read);
    Ok(())
}

/// The network's facts from what was read: the VPC's block, the private subnets' zones and
/// blocks, the public subnets' blocks.
fn fill(network: &mut Network, read: ReadNetwork) {
    network.cidr = read.cidr;
    network.availability_zones = read
        .private
        .iter()
        .map(|subnet| subnet.availability_zone.clone())
        .collect();
    network.private_subnets = read.private.iter().map(|subnet| subnet.cidr).collect();
    network.public_subnets = read.public.iter().map(|subnet| subnet.cidr).collect();
    if let Some(existing) = &mut network.existing {
        existing.read = Some(read);
    }
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

    // The tier the database goes in needs two zones, as the private subnets do for EKS.
    let database_tier = match stack.database.subnets {
        DatabaseSubnets::Private => (&existing.private_subnet_ids, &private, "private"),
        DatabaseSubnets::Public => (&existing.public_subnet_ids, &public, "public"),
    };
    for (references, subnets, tier) in [
        (&existing.private_subnet_ids, &private, "private"),
        database_tier,
    ] {
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
    // The relay's NetworkPolicy admits the VPC's primary block: the database must be in it.
    if crate::graph::uses_relay(stack)
        && let Some(vpc_cidr) = vpc_cidr
    {
        for (reference, subnet) in database_tier.0.iter().zip(database_tier.1) {
            if let Some(subnet) = subnet
                && !vpc_cidr.contains(&subnet.cidr)
            {
                problems.push(at(
                    reference,
                    format!(
                        "subnet `{}` ({}) lies outside the VPC's primary block {vpc_cidr}, which is all the database relay may reach",
                        reference.id, subnet.cidr
                    ),
                    "list database subnets of the primary block, or set `database.admin_access: endpoint` and reach the database through a tunnel of your own",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::SourceSpan;

    fn reference(id: &str, path: &str) -> Reference {
        Reference {
            id: id.into(),
            path: path.into(),
            span: SourceSpan::point(1, 1),
        }
    }

    #[test]
    fn the_facts_of_a_read_network_are_its_vpc_block_and_subnets() {
        let block = |text: &str| text.parse::<Ipv4Cidr>().unwrap();
        let mut network = Network {
            cidr: Ipv4Cidr::UNKNOWN,
            availability_zones: Vec::new(),
            nat_gateways: crate::spec::model::NatGateways::None,
            public_subnets: Vec::new(),
            private_subnets: Vec::new(),
            existing: Some(crate::spec::model::ExistingNetwork {
                vpc_id: reference("vpc-01234567", "network.existing.vpc_id"),
                private_subnet_ids: Vec::new(),
                public_subnet_ids: Vec::new(),
                read: None,
            }),
        };
        assert!(!network.is_known());
        let subnet = |id: &str, zone: &str, cidr: &str| ReadSubnet {
            id: id.into(),
            availability_zone: zone.into(),
            cidr: block(cidr),
        };
        fill(
            &mut network,
            ReadNetwork {
                vpc_id: "vpc-01234567".into(),
                cidr: block("10.1.0.0/16"),
                private: vec![
                    subnet("subnet-0000000a", "us-west-2a", "10.1.1.0/24"),
                    subnet("subnet-0000000b", "us-west-2b", "10.1.2.0/24"),
                ],
                public: vec![subnet("subnet-0000000c", "us-west-2a", "10.1.3.0/24")],
            },
        );
        assert!(network.is_known());
        assert_eq!(network.cidr, block("10.1.0.0/16"));
        assert_eq!(network.availability_zones, ["us-west-2a", "us-west-2b"]);
        assert_eq!(
            network.private_subnets,
            [block("10.1.1.0/24"), block("10.1.2.0/24")]
        );
        assert_eq!(network.public_subnets, [block("10.1.3.0/24")]);
    }
}
