//! AWS partitions: every ARN, service principal, host name and download address that differs
//! between the commercial partition, China and GovCloud comes from here (issue 17, item 1).
//!
//! Sources, each rule beside the code that implements it:
//! - partition ids and DNS suffixes: botocore's `botocore/data/partitions.json`
//!   (`aws`: `amazonaws.com`; `aws-cn`: `amazonaws.com.cn`; `aws-us-gov`: `amazonaws.com`);
//! - ARNs: "Amazon Resource Names (ARNs)", IAM User Guide (`arn:partition:service:region:
//!   account:resource`);
//! - service principals: eksctl's `pkg/apis/eksctl.io/v1alpha5/partitions.go`, the map EKS's own
//!   tool uses (China: `ec2.amazonaws.com.cn`, `eks.amazonaws.com`). EKS in China refuses a node
//!   role that trusts only `ec2.amazonaws.com` ("Following required service principals
//!   [ec2.amazonaws.com.cn] were not found in the trust relationships of nodeRole",
//!   bottlerocket-update-operator#316);
//! - the IRSA audience: `sts.amazonaws.com` in every partition (eksctl#1910; the EKS Pod Identity
//!   Webhook's `--token-audience` default, the same in China);
//! - the RDS CA bundle: "Using SSL/TLS to encrypt a connection to a DB cluster", Amazon Aurora
//!   User Guide, and its China edition on docs.amazonaws.cn (per-region bundles on
//!   `rds-truststore.s3.cn-north-1.amazonaws.com.cn`).

use std::fmt;

/// An AWS partition: a group of regions with its own ARNs, principals and endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    /// `aws`: the commercial regions.
    Aws,
    /// `aws-cn`: Beijing (`cn-north-1`) and Ningxia (`cn-northwest-1`).
    AwsCn,
    /// `aws-us-gov`: GovCloud (`us-gov-west-1`, `us-gov-east-1`).
    AwsUsGov,
}

/// The service principal EKS Pod Identity assumes roles as, and the audience of the service
/// account token the Pod Identity Agent presents: `pods.eks.amazonaws.com` in every partition
/// (the China edition of "Create IAM role with trust policy required by EKS Pod Identity",
/// docs.amazonaws.cn/en_us/eks/latest/userguide/pod-id-role.html, writes the same).
pub const POD_IDENTITY_PRINCIPAL: &str = "pods.eks.amazonaws.com";

/// The audience of a service account token that STS accepts for IRSA, and the client id of
/// the cluster's OIDC provider: the same in every partition (eksctl#1910: "audience is a token
/// rather than endpoint").
pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";

impl Partition {
    pub const ALL: [Partition; 3] = [Partition::Aws, Partition::AwsCn, Partition::AwsUsGov];

    /// The partition of a region: `cn-*` is China, `us-gov-*` GovCloud, every other region
    /// commercial (botocore's `regionRegex` per partition).
    pub fn of_region(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }

    /// The partition an ARN names (`arn:<partition>:...`); `None` when it is not an ARN of a
    /// known partition.
    pub fn of_arn(arn: &str) -> Option<Partition> {
        let id = arn.strip_prefix("arn:")?.split(':').next()?;
        Partition::ALL
            .into_iter()
            .find(|partition| partition.id() == id)
    }

    /// `aws`, `aws-cn` or `aws-us-gov`: the second field of every ARN.
    pub fn id(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// The DNS suffix of the partition's endpoints.
    pub fn dns_suffix(self) -> &'static str {
        match self {
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
        }
    }

    /// The principal a node role trusts, so EC2 instances (EKS nodes) may assume it.
    pub fn ec2_principal(self) -> &'static str {
        match self {
            Partition::AwsCn => "ec2.amazonaws.com.cn",
            Partition::Aws | Partition::AwsUsGov => "ec2.amazonaws.com",
        }
    }

    /// The principal a cluster role trusts, so EKS may assume it: `eks.amazonaws.com` in
    /// China too (eksctl's partition map; terraform-aws-eks#1904).
    pub fn eks_principal(self) -> &'static str {
        "eks.amazonaws.com"
    }

    /// An AWS managed policy: `arn:<partition>:iam::aws:policy/<name>`.
    pub fn managed_policy(self, name: &str) -> String {
        format!("arn:{}:iam::aws:policy/{name}", self.id())
    }

    /// An EKS access policy: `arn:<partition>:eks::aws:cluster-access-policy/<name>`
    /// ("Associate access policies with access entries", Amazon EKS User Guide, and its China
    /// edition: `arn:aws-cn:eks::aws:cluster-access-policy/...`).
    pub fn cluster_access_policy(self, name: &str) -> String {
        format!("arn:{}:eks::aws:cluster-access-policy/{name}", self.id())
    }

    /// An IAM role's ARN, as suggested in a fix.
    pub fn role_arn(self, account: &str, name: &str) -> String {
        format!("arn:{}:iam::{account}:role/{name}", self.id())
    }

    /// The regional STS host (`sts.<region>.<dns suffix>`); China and GovCloud have no global
    /// endpoint (aws-iam-authenticator: "global endpoint unsupported in partition").
    pub fn sts_host(self, region: &str) -> String {
        format!("sts.{region}.{}", self.dns_suffix())
    }

    /// Where AWS publishes the RDS certificate authorities for `region`: the global bundle in
    /// the commercial partition and GovCloud (GovCloud's own address), the region's bundle in
    /// China (always on the `cn-north-1` bucket).
    pub fn rds_ca_bundle_url(self, region: &str) -> String {
        match self {
            Partition::Aws => {
                "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem".to_string()
            }
            Partition::AwsUsGov => {
                "https://truststore.pki.us-gov-west-1.rds.amazonaws.com/global/global-bundle.pem"
                    .to_string()
            }
            Partition::AwsCn => format!(
                "https://rds-truststore.s3.cn-north-1.amazonaws.com.cn/{region}/{region}-bundle.pem"
            ),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each partition's values, one row per region kind.
    #[test]
    fn each_region_gets_its_partitions_values() {
        struct Row {
            region: &'static str,
            id: &'static str,
            ec2: &'static str,
            sts: &'static str,
            admin: &'static str,
            bundle: &'static str,
        }
        let rows = [
            Row {
                region: "us-west-2",
                id: "aws",
                ec2: "ec2.amazonaws.com",
                sts: "sts.us-west-2.amazonaws.com",
                admin: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                bundle: "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem",
            },
            Row {
                region: "cn-northwest-1",
                id: "aws-cn",
                ec2: "ec2.amazonaws.com.cn",
                sts: "sts.cn-northwest-1.amazonaws.com.cn",
                admin: "arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                bundle: "https://rds-truststore.s3.cn-north-1.amazonaws.com.cn/cn-northwest-1/cn-northwest-1-bundle.pem",
            },
            Row {
                region: "us-gov-west-1",
                id: "aws-us-gov",
                ec2: "ec2.amazonaws.com",
                sts: "sts.us-gov-west-1.amazonaws.com",
                admin: "arn:aws-us-gov:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                bundle: "https://truststore.pki.us-gov-west-1.rds.amazonaws.com/global/global-bundle.pem",
            },
        ];
        for row in rows {
            let partition = Partition::of_region(row.region);
            assert_eq!(partition.id(), row.id, "{}", row.region);
            assert_eq!(partition.ec2_principal(), row.ec2);
            assert_eq!(partition.eks_principal(), "eks.amazonaws.com");
            assert_eq!(partition.sts_host(row.region), row.sts);
            assert_eq!(
                partition.cluster_access_policy("AmazonEKSClusterAdminPolicy"),
                row.admin
            );
            assert_eq!(partition.rds_ca_bundle_url(row.region), row.bundle);
            assert_eq!(
                Partition::of_arn(&partition.role_arn("123456789012", "r")),
                Some(partition)
            );
        }
        assert_eq!(Partition::of_arn("arn:aws-iso:iam::1:role/r"), None);
        assert_eq!(Partition::of_arn("not-an-arn"), None);
    }
}
