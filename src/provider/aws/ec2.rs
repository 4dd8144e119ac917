//! EC2: VPC, internet gateway, subnets, elastic IPs, NAT gateways, route tables and their
//! associations, security groups and rules. Everything taggable is tagged at creation, so a
//! create that crashed before it was recorded is found again by its `pwless:address` tag.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, IpPermission, IpRange, ResourceType, Tag,
    TagSpecification, VpcAttributeName,
};
use serde_json::{Value, json};

use super::{AwsProvider, READY_LIMIT, RETRY_LIMIT, found, missing_field, sdk_error};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::provider::wait::{self, Poll};
use crate::provider::{
    Applied, ErrorKind, Inputs, ProviderError, input_bool, input_i64, input_str, input_tags,
    overlay, tags_value,
};
use crate::state::ResourceState;

fn tag_spec(resource_type: ResourceType, inputs: &Inputs) -> TagSpecification {
    let tags = input_tags(inputs)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect();
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(tags))
        .build()
}

fn tags_of(tags: &[Tag]) -> Value {
    tags_value(tags.iter().filter_map(|tag| {
        Some((
            tag.key()?.to_string(),
            tag.value().unwrap_or_default().to_string(),
        ))
    }))
}

fn applied(id: &str) -> Applied {
    Applied {
        id: Some(id.to_string()),
        outputs: BTreeMap::from([("id".to_string(), json!(id))]),
    }
}

fn id_of(resource: &ResourceState) -> Result<&str, ProviderError> {
    resource
        .id
        .as_deref()
        .ok_or_else(|| ProviderError::permanent(format!("{} has no recorded id", resource.address)))
}

/// This stack's resources. The address is matched on our side ([`is_at`]): filter values
/// are patterns to some endpoints, and addresses hold brackets.
fn of_stack(aws: &AwsProvider) -> Option<Vec<Filter>> {
    Some(vec![
        Filter::builder()
            .name("tag:pwless:stack")
            .values(&aws.stack)
            .build(),
    ])
}

/// Whether `tags` mark the resource of `address` in this stack.
fn is_at(tags: &[Tag], stack: &str, address: &str) -> bool {
    let tag = |key: &str| {
        tags.iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(|tag| tag.value())
    };
    tag("pwless:stack") == Some(stack) && tag("pwless:address") == Some(address)
}

/// Sends `call`, an EC2 create that is not idempotent (no client token, no unique name), made
/// with [`AwsProvider::ec2_once`]: the SDK does not send it again by itself, since a call whose
/// answer was lost after it took effect would make a second resource. When the answer is lost
/// or refused for a passing reason (a transport failure, a 5xx, throttling), the resource is
/// looked for by its `pwless:stack` and `pwless:address` tags ([`adopt`]) for a few seconds
/// (EC2's reads lag its writes) before the call is tried again, at most [`ATTEMPTS`] times.
/// Gives back the new (or found) resource's id.
async fn create_once<T, Fut>(
    aws: &AwsProvider,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
    mut call: impl FnMut() -> Fut,
    id_of: impl Fn(&T) -> Option<String>,
) -> Result<String, ProviderError>
where
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(out) => {
                return id_of(&out).ok_or_else(|| missing_field(&format!("the {kind} id")));
            }
            Err(error) if error.kind == ErrorKind::Retryable && attempt < ATTEMPTS => {}
            Err(error) => return Err(error),
        }
        for pause in [0, 1, 2, 4] {
            tokio::time::sleep(std::time::Duration::from_secs(pause)).await;
            if let Some(found) = adopt(aws, address, kind, inputs).await? {
                return found
                    .id
                    .ok_or_else(|| missing_field(&format!("the {kind} id")));
            }
        }
        // Not there: the call did not take effect; send it again.
        attempt += 1;
    }
}

/// How many times [`create_once`] sends a create whose answers keep being lost.
const ATTEMPTS: u32 = 6;

pub(super) async fn create(
    aws: &AwsProvider,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Applied, ProviderError> {
    let ec2 = &aws.ec2;
    let once = &aws.ec2_once;
    match kind {
        ResourceKind::Vpc => {
            let cidr = input_str(inputs, "cidr_block")?;
            let id = create_once(
                aws,
                address,
                kind,
                inputs,
                || async {
                    once.create_vpc()
                        .cidr_block(cidr)
                        .tag_specifications(tag_spec(ResourceType::Vpc, inputs))
                        .send()
                        .await
                        .map_err(sdk_error("create the VPC"))
                },
                |out| out.vpc().and_then(|vpc| vpc.vpc_id()).map(str::to_string),
            )
            .await?;
            set_vpc_dns(aws, &id, inputs).await?;
            Ok(applied(&id))
        }
        ResourceKind::InternetGateway => {
            let id = create_once(
                aws,
                address,
                kind,
                inputs,
                || async {
                    once.create_internet_gateway()
                        .tag_specifications(tag_spec(ResourceType::InternetGateway, inputs))
                        .send()
                        .await
                        .map_err(sdk_error("create the internet gateway"))
                },
                |out| {
                    out.internet_gateway()
                        .and_then(|gateway| gateway.internet_gateway_id())
                        .map(str::to_string)
                },
            )
            .await?;
            let vpc = input_str(inputs, "vpc_id")?;
            match ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(sdk_error("attach the internet gateway"))
            {
                // Attached by an earlier attempt whose answer was lost: success if to this VPC.
                Err(error) if error.code.as_deref() == Some("Resource.AlreadyAssociated") => {
                    let attached = ec2
                        .describe_internet_gateways()
                        .internet_gateway_ids(&id)
                        .send()
                        .await
                        .map_err(sdk_error("describe the internet gateway"))?
                        .internet_gateways()
                        .iter()
                        .flat_map(|gateway| gateway.attachments())
                        .any(|attachment| attachment.vpc_id() == Some(vpc));
                    if !attached {
                        return Err(error);
                    }
                }
                other => other.map(drop)?,
            }
            Ok(applied(&id))
        }
        ResourceKind::Subnet => {
            let (vpc, cidr, zone) = (
                input_str(inputs, "vpc_id")?,
                input_str(inputs, "cidr_block")?,
                input_str(inputs, "availability_zone")?,
            );
            let id = create_once(
                aws,
                address,
                kind,
                inputs,
                || async {
                    once.create_subnet()
                        .vpc_id(vpc)
                        .cidr_block(cidr)
                        .availability_zone(zone)
                        .tag_specifications(tag_spec(ResourceType::Subnet, inputs))
                        .send()
                        .await
                        .map_err(sdk_error("create the subnet"))
                },
                |out| {
                    out.subnet()
                        .and_then(|subnet| subnet.subnet_id())
                        .map(str::to_string)
                },
            )
            .await?;
            if input_bool(inputs, "map_public_ip_on_launch")? {
                set_map_public_ip(aws, &id, true).await?;
            }
            Ok(applied(&id))
        }
        ResourceKind::ElasticIp => {
            let public_ip = std::sync::Mutex::new(None);
            let id = create_once(
                aws,
                address,
                kind,
                inputs,
                || async {
                    once.allocate_address()
                        .domain(DomainType::Vpc)
                        .tag_specifications(tag_spec(ResourceType::ElasticIp, inputs))
                        .send()
                        .await
                        .map_err(sdk_error("allocate the elastic IP"))
                },
                |out| {
                    *public_ip.lock().unwrap_or_else(|e| e.into_inner()) =
                        out.public_ip().map(str::to_string);
                    out.allocation_id().map(str::to_string)
                },
            )
            .await?;
            let public_ip = match public_ip.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(ip) => Some(ip),
                // Found after a lost answer: its address is read back.
                None => ec2
                    .describe_addresses()
                    .allocation_ids(&id)
                    .send()
                    .await
                    .map_err(sdk_error("describe the elastic IP"))?
                    .addresses()
                    .first()
                    .and_then(|address| address.public_ip())
                    .map(str::to_string),
            };
            let mut result = applied(&id);
            result.outputs.insert("public_ip".into(), json!(public_ip));
            Ok(result)
        }
        ResourceKind::NatGateway => {
            let (subnet, allocation) = (
                input_str(inputs, "subnet_id")?,
                input_str(inputs, "allocation_id")?,
            );
            let id = create_once(
                aws,
                address,
                kind,
                inputs,
                || async {
                    once.create_nat_gateway()
                        .subnet_id(subnet)
                        .allocation_id(allocation)
                        .tag_specifications(tag_spec(ResourceType::Natgateway, inputs))
                        .send()
                        .await
                        .map_err(sdk_error("create the NAT gateway"))
                },
                |out| {
                    out.nat_gateway()
                        .and_then(|gateway| gateway.nat_gateway_id())
                        .map(str::to_string)
                },
            )
            .await?;
            wait_nat(aws, &id, "available").await?;
            Ok(applied(&id))
        }
        ResourceKind::RouteTable => {
            let vpc = input_str(inputs, "vpc_id")?;
            let id = create_once(
                aws,
                address,
                kind,
                inputs,
                || async {
                    once.create_route_table()
                        .vpc_id(vpc)
                        .tag_specifications(tag_spec(ResourceType::RouteTable, inputs))
                        .send()
                        .await
                        .map_err(sdk_error("create the route table"))
                },
                |out| {
                    out.route_table()
                        .and_then(|table| table.route_table_id())
                        .map(str::to_string)
                },
            )
            .await?;
            for route in routes(inputs) {
                add_route(aws, &id, &route).await?;
            }
            Ok(applied(&id))
        }
        ResourceKind::RouteTableAssociation => {
            let out = ec2
                .associate_route_table()
                .subnet_id(input_str(inputs, "subnet_id")?)
                .route_table_id(input_str(inputs, "route_table_id")?)
                .send()
                .await
                .map_err(sdk_error("associate the route table"))?;
            Ok(applied(
                out.association_id()
                    .ok_or_else(|| missing_field("the association id"))?,
            ))
        }
        ResourceKind::SecurityGroup => {
            let out = ec2
                .create_security_group()
                .group_name(input_str(inputs, "name")?)
                .description(input_str(inputs, "description")?)
                .vpc_id(input_str(inputs, "vpc_id")?)
                .tag_specifications(tag_spec(ResourceType::SecurityGroup, inputs))
                .send()
                .await
                .map_err(sdk_error("create the security group"))?;
            Ok(applied(
                out.group_id()
                    .ok_or_else(|| missing_field("the security group id"))?,
            ))
        }
        ResourceKind::SecurityGroupRule => {
            let permission = IpPermission::builder()
                .ip_protocol(input_str(inputs, "protocol")?)
                .from_port(input_i64(inputs, "from_port")? as i32)
                .to_port(input_i64(inputs, "to_port")? as i32)
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip(input_str(inputs, "cidr_ipv4")?)
                        .description(address)
                        .build(),
                )
                .build();
            let out = ec2
                .authorize_security_group_ingress()
                .group_id(input_str(inputs, "security_group_id")?)
                .ip_permissions(permission)
                .send()
                .await
                .map_err(sdk_error("authorize the security group ingress"))?;
            let id = out
                .security_group_rules()
                .first()
                .and_then(|rule| rule.security_group_rule_id())
                .ok_or_else(|| missing_field("the security group rule id"))?;
            Ok(applied(id))
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an EC2 resource"
        ))),
    }
}

async fn set_vpc_dns(aws: &AwsProvider, id: &str, inputs: &Inputs) -> Result<(), ProviderError> {
    // One attribute per call, as the API demands.
    aws.ec2
        .modify_vpc_attribute()
        .vpc_id(id)
        .enable_dns_support(
            AttributeBooleanValue::builder()
                .value(input_bool(inputs, "enable_dns_support")?)
                .build(),
        )
        .send()
        .await
        .map_err(sdk_error("set the VPC's DNS support"))?;
    aws.ec2
        .modify_vpc_attribute()
        .vpc_id(id)
        .enable_dns_hostnames(
            AttributeBooleanValue::builder()
                .value(input_bool(inputs, "enable_dns_hostnames")?)
                .build(),
        )
        .send()
        .await
        .map_err(sdk_error("set the VPC's DNS hostnames"))?;
    Ok(())
}

async fn set_map_public_ip(aws: &AwsProvider, id: &str, value: bool) -> Result<(), ProviderError> {
    aws.ec2
        .modify_subnet_attribute()
        .subnet_id(id)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(value).build())
        .send()
        .await
        .map_err(sdk_error("set the subnet's public IP mapping"))?;
    Ok(())
}

/// Waits until the NAT gateway reaches `state` (`available` or `deleted`).
async fn wait_nat(aws: &AwsProvider, id: &str, state: &str) -> Result<(), ProviderError> {
    wait::until(
        &format!("NAT gateway {id} to be {state}"),
        READY_LIMIT,
        || async {
            let out = aws
                .ec2
                .describe_nat_gateways()
                .nat_gateway_ids(id)
                .send()
                .await
                .map_err(sdk_error("describe the NAT gateway"));
            let out = match found(out)? {
                Some(out) => out,
                None if state == "deleted" => return Ok(Poll::Ready(())),
                None => return Ok(Poll::Pending("not visible yet".into())),
            };
            let current = out
                .nat_gateways()
                .first()
                .and_then(|gateway| gateway.state())
                .map(|s| s.as_str().to_string());
            match current.as_deref() {
                Some(current) if current == state => Ok(Poll::Ready(())),
                None if state == "deleted" => Ok(Poll::Ready(())),
                Some("failed") => Err(ProviderError::permanent(format!("NAT gateway {id} failed"))),
                other => Ok(Poll::Pending(other.unwrap_or("unknown").to_string())),
            }
        },
    )
    .await
}

/// Waits until the Elastic IPs of the deleted NAT gateway `id` are no longer associated with
/// its network interface. EC2 disassociates them as the gateway goes ("Deleting a NAT gateway
/// disassociates its Elastic IP address, but does not release the address", Amazon VPC User
/// Guide, "Delete a NAT gateway"); a replacement gateway for the same address made before that
/// fails with `Resource.AlreadyAssociated`.
async fn wait_addresses_let_go(aws: &AwsProvider, id: &str) -> Result<(), ProviderError> {
    let out = aws
        .ec2
        .describe_nat_gateways()
        .nat_gateway_ids(id)
        .send()
        .await
        .map_err(sdk_error("describe the NAT gateway"));
    let Some(out) = found(out)? else {
        return Ok(());
    };
    let held: Vec<(String, String)> = out
        .nat_gateways()
        .iter()
        .flat_map(|gateway| gateway.nat_gateway_addresses())
        .filter_map(|address| {
            Some((
                address.allocation_id()?.to_string(),
                address.network_interface_id()?.to_string(),
            ))
        })
        .collect();
    for (allocation, interface) in held {
        wait::until(
            &format!("Elastic IP {allocation} to be let go by NAT gateway {id}"),
            READY_LIMIT,
            || async {
                let out = aws
                    .ec2
                    .describe_addresses()
                    .allocation_ids(&allocation)
                    .send()
                    .await
                    .map_err(sdk_error("describe the elastic IP"));
                let still = found(out)?.is_some_and(|out| {
                    out.addresses()
                        .iter()
                        .any(|address| address.network_interface_id() == Some(interface.as_str()))
                });
                Ok(if still {
                    Poll::Pending(format!("still associated with {interface}"))
                } else {
                    Poll::Ready(())
                })
            },
        )
        .await?;
    }
    Ok(())
}

/// A route as the `routes` input holds it: destination and exactly one target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Route {
    destination: String,
    target_kind: &'static str,
    target: String,
}

fn routes(inputs: &Inputs) -> Vec<Route> {
    inputs
        .get("routes")
        .and_then(Value::as_array)
        .map(|routes| {
            routes
                .iter()
                .filter_map(|route| {
                    let destination = route.get("destination_cidr_block")?.as_str()?.to_string();
                    ["gateway_id", "nat_gateway_id"]
                        .into_iter()
                        .find_map(|kind| {
                            Some(Route {
                                destination: destination.clone(),
                                target_kind: kind,
                                target: route.get(kind)?.as_str()?.to_string(),
                            })
                        })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn routes_value(routes: &[Route]) -> Value {
    Value::Array(
        routes
            .iter()
            .map(|route| json!({"destination_cidr_block": route.destination, route.target_kind: route.target}))
            .collect(),
    )
}

async fn add_route(aws: &AwsProvider, table: &str, route: &Route) -> Result<(), ProviderError> {
    let call = aws
        .ec2
        .create_route()
        .route_table_id(table)
        .destination_cidr_block(&route.destination);
    let call = match route.target_kind {
        "nat_gateway_id" => call.nat_gateway_id(&route.target),
        _ => call.gateway_id(&route.target),
    };
    match call.send().await.map_err(sdk_error("create the route")) {
        // A route made by an earlier attempt whose answer was lost (the SDK sent the call
        // again): set it to this target, which is idempotent, rather than fail.
        Err(error) if error.code.as_deref() == Some("RouteAlreadyExists") => {
            let call = aws
                .ec2
                .replace_route()
                .route_table_id(table)
                .destination_cidr_block(&route.destination);
            let call = match route.target_kind {
                "nat_gateway_id" => call.nat_gateway_id(&route.target),
                _ => call.gateway_id(&route.target),
            };
            call.send().await.map_err(sdk_error("replace the route"))?;
            Ok(())
        }
        other => other.map(drop),
    }
}

pub(super) async fn read(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<Observed, ProviderError> {
    let ec2 = &aws.ec2;
    let id = id_of(resource)?;
    let prior = &resource.inputs;
    let observed = match resource.kind {
        ResourceKind::Vpc => {
            // The three reads are independent: ask them at once (the VPC is the longest
            // read of a refresh otherwise).
            let (described, support, hostnames) = tokio::join!(
                ec2.describe_vpcs().vpc_ids(id).send(),
                ec2.describe_vpc_attribute()
                    .vpc_id(id)
                    .attribute(VpcAttributeName::EnableDnsSupport)
                    .send(),
                ec2.describe_vpc_attribute()
                    .vpc_id(id)
                    .attribute(VpcAttributeName::EnableDnsHostnames)
                    .send(),
            );
            let Some(out) = found(described.map_err(sdk_error("describe the VPC")))? else {
                return Ok(Observed::Missing);
            };
            let Some(vpc) = out.vpcs().first() else {
                return Ok(Observed::Missing);
            };
            let support = support.map_err(sdk_error("describe the VPC's DNS support"))?;
            let hostnames = hostnames.map_err(sdk_error("describe the VPC's DNS hostnames"))?;
            overlay(
                prior,
                [
                    ("cidr_block", json!(vpc.cidr_block())),
                    ("tags", tags_of(vpc.tags())),
                    (
                        "enable_dns_support",
                        json!(support.enable_dns_support().and_then(|v| v.value())),
                    ),
                    (
                        "enable_dns_hostnames",
                        json!(hostnames.enable_dns_hostnames().and_then(|v| v.value())),
                    ),
                ],
            )
        }
        ResourceKind::InternetGateway => {
            let out = ec2
                .describe_internet_gateways()
                .internet_gateway_ids(id)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("describe the internet gateway")))? else {
                return Ok(Observed::Missing);
            };
            let Some(gateway) = out.internet_gateways().first() else {
                return Ok(Observed::Missing);
            };
            let vpc = gateway
                .attachments()
                .first()
                .and_then(|attachment| attachment.vpc_id());
            overlay(
                prior,
                [("vpc_id", json!(vpc)), ("tags", tags_of(gateway.tags()))],
            )
        }
        ResourceKind::Subnet => {
            let out = ec2.describe_subnets().subnet_ids(id).send().await;
            let Some(out) = found(out.map_err(sdk_error("describe the subnet")))? else {
                return Ok(Observed::Missing);
            };
            let Some(subnet) = out.subnets().first() else {
                return Ok(Observed::Missing);
            };
            overlay(
                prior,
                [
                    ("vpc_id", json!(subnet.vpc_id())),
                    ("cidr_block", json!(subnet.cidr_block())),
                    ("availability_zone", json!(subnet.availability_zone())),
                    (
                        "map_public_ip_on_launch",
                        json!(subnet.map_public_ip_on_launch().unwrap_or(false)),
                    ),
                    ("tags", tags_of(subnet.tags())),
                ],
            )
        }
        ResourceKind::ElasticIp => {
            let out = ec2.describe_addresses().allocation_ids(id).send().await;
            let Some(out) = found(out.map_err(sdk_error("describe the elastic IP")))? else {
                return Ok(Observed::Missing);
            };
            let Some(address) = out.addresses().first() else {
                return Ok(Observed::Missing);
            };
            overlay(prior, [("tags", tags_of(address.tags()))])
        }
        ResourceKind::NatGateway => {
            let out = ec2.describe_nat_gateways().nat_gateway_ids(id).send().await;
            let Some(out) = found(out.map_err(sdk_error("describe the NAT gateway")))? else {
                return Ok(Observed::Missing);
            };
            let Some(gateway) = out.nat_gateways().first() else {
                return Ok(Observed::Missing);
            };
            if matches!(
                gateway.state().map(|s| s.as_str()),
                Some("deleted" | "deleting" | "failed")
            ) {
                return Ok(Observed::Missing);
            }
            let allocation = gateway
                .nat_gateway_addresses()
                .first()
                .and_then(|address| address.allocation_id());
            overlay(
                prior,
                [
                    ("subnet_id", json!(gateway.subnet_id())),
                    ("allocation_id", json!(allocation)),
                    ("tags", tags_of(gateway.tags())),
                ],
            )
        }
        ResourceKind::RouteTable => {
            let out = ec2.describe_route_tables().route_table_ids(id).send().await;
            let Some(out) = found(out.map_err(sdk_error("describe the route table")))? else {
                return Ok(Observed::Missing);
            };
            let Some(table) = out.route_tables().first() else {
                return Ok(Observed::Missing);
            };
            let mut seen: Vec<Route> = table
                .routes()
                .iter()
                .filter_map(|route| {
                    let destination = route.destination_cidr_block()?.to_string();
                    if let Some(nat) = route.nat_gateway_id() {
                        return Some(Route {
                            destination,
                            target_kind: "nat_gateway_id",
                            target: nat.to_string(),
                        });
                    }
                    // `local` is the VPC's own route, always there.
                    let gateway = route.gateway_id().filter(|gateway| *gateway != "local")?;
                    Some(Route {
                        destination,
                        target_kind: "gateway_id",
                        target: gateway.to_string(),
                    })
                })
                .collect();
            seen.sort();
            overlay(
                prior,
                [
                    ("vpc_id", json!(table.vpc_id())),
                    ("routes", routes_value(&seen)),
                    ("tags", tags_of(table.tags())),
                ],
            )
        }
        ResourceKind::RouteTableAssociation => {
            let out = ec2
                .describe_route_tables()
                .filters(
                    Filter::builder()
                        .name("association.route-table-association-id")
                        .values(id)
                        .build(),
                )
                .send()
                .await
                .map_err(sdk_error("describe the route table association"))?;
            let association = out
                .route_tables()
                .iter()
                .flat_map(|table| table.associations())
                .find(|association| association.route_table_association_id() == Some(id));
            let Some(association) = association else {
                return Ok(Observed::Missing);
            };
            overlay(
                prior,
                [
                    ("subnet_id", json!(association.subnet_id())),
                    ("route_table_id", json!(association.route_table_id())),
                ],
            )
        }
        ResourceKind::SecurityGroup => {
            let out = ec2.describe_security_groups().group_ids(id).send().await;
            let Some(out) = found(out.map_err(sdk_error("describe the security group")))? else {
                return Ok(Observed::Missing);
            };
            let Some(group) = out.security_groups().first() else {
                return Ok(Observed::Missing);
            };
            overlay(
                prior,
                [
                    ("vpc_id", json!(group.vpc_id())),
                    ("name", json!(group.group_name())),
                    ("description", json!(group.description())),
                    ("tags", tags_of(group.tags())),
                ],
            )
        }
        ResourceKind::SecurityGroupRule => {
            let out = ec2
                .describe_security_group_rules()
                .security_group_rule_ids(id)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("describe the security group rule")))?
            else {
                return Ok(Observed::Missing);
            };
            let Some(rule) = out.security_group_rules().first() else {
                return Ok(Observed::Missing);
            };
            overlay(
                prior,
                [
                    ("security_group_id", json!(rule.group_id())),
                    (
                        "type",
                        json!(if rule.is_egress() == Some(true) {
                            "egress"
                        } else {
                            "ingress"
                        }),
                    ),
                    ("protocol", json!(rule.ip_protocol())),
                    ("from_port", json!(rule.from_port())),
                    ("to_port", json!(rule.to_port())),
                    ("cidr_ipv4", json!(rule.cidr_ipv4())),
                ],
            )
        }
        other => {
            return Err(ProviderError::permanent(format!(
                "{other} is not an EC2 resource"
            )));
        }
    };
    Ok(Observed::Present {
        inputs: observed,
        outputs: resource.outputs.clone(),
    })
}

pub(super) async fn update(
    aws: &AwsProvider,
    resource: &ResourceState,
    inputs: &Inputs,
    changed: &[String],
) -> Result<Applied, ProviderError> {
    let id = id_of(resource)?;
    for name in changed {
        match (resource.kind, name.as_str()) {
            (_, "tags") => sync_tags(aws, id, &resource.inputs, inputs).await?,
            (ResourceKind::Vpc, "enable_dns_support" | "enable_dns_hostnames") => {
                set_vpc_dns(aws, id, inputs).await?
            }
            (ResourceKind::Subnet, "map_public_ip_on_launch") => {
                set_map_public_ip(aws, id, input_bool(inputs, "map_public_ip_on_launch")?).await?
            }
            (ResourceKind::RouteTable, "routes") => {
                let old = routes(&resource.inputs);
                let new = routes(inputs);
                for route in old
                    .iter()
                    .filter(|route| !new.iter().any(|n| n.destination == route.destination))
                {
                    aws.ec2
                        .delete_route()
                        .route_table_id(id)
                        .destination_cidr_block(&route.destination)
                        .send()
                        .await
                        .map_err(sdk_error("delete the route"))?;
                }
                for route in new.iter().filter(|route| !old.contains(route)) {
                    if old.iter().any(|o| o.destination == route.destination) {
                        let call = aws
                            .ec2
                            .replace_route()
                            .route_table_id(id)
                            .destination_cidr_block(&route.destination);
                        let call = match route.target_kind {
                            "nat_gateway_id" => call.nat_gateway_id(&route.target),
                            _ => call.gateway_id(&route.target),
                        };
                        call.send().await.map_err(sdk_error("replace the route"))?;
                    } else {
                        add_route(aws, id, route).await?;
                    }
                }
            }
            (kind, name) => {
                return Err(super::not_in_place(kind, name));
            }
        }
    }
    Ok(Applied::unchanged(resource))
}

async fn sync_tags(
    aws: &AwsProvider,
    id: &str,
    old: &Inputs,
    new: &Inputs,
) -> Result<(), ProviderError> {
    let changes = crate::provider::tag_changes(old, new);
    let removed: Vec<Tag> = changes
        .removed
        .iter()
        .map(|key| Tag::builder().key(key).build())
        .collect();
    let set: Vec<Tag> = changes
        .set
        .iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect();
    if !removed.is_empty() {
        aws.ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(removed))
            .send()
            .await
            .map_err(sdk_error("remove tags"))?;
    }
    if !set.is_empty() {
        aws.ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(sdk_error("set tags"))?;
    }
    Ok(())
}

pub(super) async fn delete(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<(), ProviderError> {
    let ec2 = &aws.ec2;
    let id = id_of(resource)?;
    // Network parts refuse deletion while something inside still drains (ENIs of load
    // balancers, NAT gateways): DependencyViolation is retried, not reported.
    let draining = [
        "DependencyViolation",
        "InvalidIPAddress.InUse",
        "AuthFailure",
    ];
    let result = match resource.kind {
        ResourceKind::Vpc => {
            wait::retrying(RETRY_LIMIT, || async {
                ec2.delete_vpc()
                    .vpc_id(id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("delete the VPC")(e).retry_on(&draining))
            })
            .await
        }
        ResourceKind::InternetGateway => {
            let vpc = resource
                .inputs
                .get("vpc_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let detached = wait::retrying(RETRY_LIMIT, || async {
                ec2.detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(&vpc)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("detach the internet gateway")(e).retry_on(&draining))
            })
            .await;
            match detached {
                Err(error)
                    if !error.is_not_found()
                        && error.code.as_deref() != Some("Gateway.NotAttached") =>
                {
                    Err(error)
                }
                _ => {
                    wait::retrying(RETRY_LIMIT, || async {
                        ec2.delete_internet_gateway()
                            .internet_gateway_id(id)
                            .send()
                            .await
                            .map(drop)
                            .map_err(|e| {
                                sdk_error("delete the internet gateway")(e).retry_on(&draining)
                            })
                    })
                    .await
                }
            }
        }
        ResourceKind::Subnet => {
            wait::retrying(RETRY_LIMIT, || async {
                ec2.delete_subnet()
                    .subnet_id(id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("delete the subnet")(e).retry_on(&draining))
            })
            .await
        }
        ResourceKind::ElasticIp => {
            wait::retrying(RETRY_LIMIT, || async {
                ec2.release_address()
                    .allocation_id(id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("release the elastic IP")(e).retry_on(&draining))
            })
            .await
        }
        ResourceKind::NatGateway => {
            match ec2
                .delete_nat_gateway()
                .nat_gateway_id(id)
                .send()
                .await
                .map_err(sdk_error("delete the NAT gateway"))
            {
                Ok(_) => match wait_nat(aws, id, "deleted").await {
                    Ok(()) => wait_addresses_let_go(aws, id).await,
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            }
        }
        ResourceKind::RouteTable => {
            wait::retrying(RETRY_LIMIT, || async {
                ec2.delete_route_table()
                    .route_table_id(id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("delete the route table")(e).retry_on(&draining))
            })
            .await
        }
        ResourceKind::RouteTableAssociation => ec2
            .disassociate_route_table()
            .association_id(id)
            .send()
            .await
            .map(drop)
            .map_err(sdk_error("disassociate the route table")),
        ResourceKind::SecurityGroup => {
            wait::retrying(RETRY_LIMIT, || async {
                ec2.delete_security_group()
                    .group_id(id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("delete the security group")(e).retry_on(&draining))
            })
            .await
        }
        ResourceKind::SecurityGroupRule => {
            let group = input_str(&resource.inputs, "security_group_id")?;
            ec2.revoke_security_group_ingress()
                .group_id(group)
                .security_group_rule_ids(id)
                .send()
                .await
                .map(drop)
                .map_err(sdk_error("revoke the security group rule"))
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an EC2 resource"
        ))),
    };
    match result {
        Err(error) if error.is_not_found() => Ok(()),
        other => other,
    }
}

pub(super) async fn adopt(
    aws: &AwsProvider,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Option<Applied>, ProviderError> {
    let ec2 = &aws.ec2;
    let filter = of_stack(aws);
    let stack = aws.stack.as_str();
    let id: Option<String> = match kind {
        ResourceKind::Vpc => ec2
            .describe_vpcs()
            .set_filters(filter.clone())
            .send()
            .await
            .map_err(sdk_error("look up the VPC"))?
            .vpcs()
            .iter()
            .find(|vpc| is_at(vpc.tags(), stack, address))
            .and_then(|vpc| vpc.vpc_id())
            .map(str::to_string),
        ResourceKind::InternetGateway => ec2
            .describe_internet_gateways()
            .set_filters(filter.clone())
            .send()
            .await
            .map_err(sdk_error("look up the internet gateway"))?
            .internet_gateways()
            .iter()
            .find(|gateway| is_at(gateway.tags(), stack, address))
            .and_then(|gateway| gateway.internet_gateway_id())
            .map(str::to_string),
        ResourceKind::Subnet => ec2
            .describe_subnets()
            .set_filters(filter.clone())
            .send()
            .await
            .map_err(sdk_error("look up the subnet"))?
            .subnets()
            .iter()
            .find(|s| is_at(s.tags(), stack, address))
            .and_then(|s| s.subnet_id())
            .map(str::to_string),
        ResourceKind::ElasticIp => {
            let out = ec2
                .describe_addresses()
                .set_filters(filter.clone())
                .send()
                .await
                .map_err(sdk_error("look up the elastic IP"))?;
            if let Some(address) = out
                .addresses()
                .iter()
                .find(|found| is_at(found.tags(), stack, address))
            {
                let id = address
                    .allocation_id()
                    .ok_or_else(|| missing_field("the allocation id"))?;
                let mut result = applied(id);
                result
                    .outputs
                    .insert("public_ip".into(), json!(address.public_ip()));
                return Ok(Some(result));
            }
            None
        }
        ResourceKind::NatGateway => {
            let out = ec2
                .describe_nat_gateways()
                .set_filter(filter.clone())
                .send()
                .await
                .map_err(sdk_error("look up the NAT gateway"))?;
            // Check the state here too: not every endpoint honours filters on this call.
            out.nat_gateways()
                .iter()
                .filter(|gateway| {
                    matches!(
                        gateway.state().map(|s| s.as_str()),
                        Some("pending" | "available")
                    )
                })
                .find(|gateway| is_at(gateway.tags(), stack, address))
                .and_then(|gateway| gateway.nat_gateway_id())
                .map(str::to_string)
        }
        ResourceKind::RouteTable => ec2
            .describe_route_tables()
            .set_filters(filter.clone())
            .send()
            .await
            .map_err(sdk_error("look up the route table"))?
            .route_tables()
            .iter()
            .find(|t| is_at(t.tags(), stack, address))
            .and_then(|t| t.route_table_id())
            .map(str::to_string),
        ResourceKind::SecurityGroup => ec2
            .describe_security_groups()
            .set_filters(filter.clone())
            .send()
            .await
            .map_err(sdk_error("look up the security group"))?
            .security_groups()
            .iter()
            .find(|g| is_at(g.tags(), stack, address))
            .and_then(|g| g.group_id())
            .map(str::to_string),
        ResourceKind::RouteTableAssociation => {
            // Untaggable: the subnet can have one association, so look it up by subnet.
            let subnet = input_str(inputs, "subnet_id")?;
            let out = ec2
                .describe_route_tables()
                .filters(
                    Filter::builder()
                        .name("association.subnet-id")
                        .values(subnet)
                        .build(),
                )
                .send()
                .await
                .map_err(sdk_error("look up the route table association"))?;
            out.route_tables()
                .iter()
                .flat_map(|table| table.associations())
                .find(|association| association.subnet_id() == Some(subnet))
                .and_then(|association| association.route_table_association_id())
                .map(str::to_string)
        }
        ResourceKind::SecurityGroupRule => {
            // Untaggable at creation here; its description holds the address.
            let group = input_str(inputs, "security_group_id")?;
            let out = ec2
                .describe_security_group_rules()
                .filters(Filter::builder().name("group-id").values(group).build())
                .send()
                .await
                .map_err(sdk_error("look up the security group rule"))?;
            out.security_group_rules()
                .iter()
                .find(|rule| rule.description() == Some(address))
                .and_then(|rule| rule.security_group_rule_id())
                .map(str::to_string)
        }
        other => {
            return Err(ProviderError::permanent(format!(
                "{other} is not an EC2 resource"
            )));
        }
    };
    Ok(id.map(|id| applied(&id)))
}
