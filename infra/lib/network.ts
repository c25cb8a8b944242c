/**
 * The network of the functions that open the HSM: the CloudHSM cluster's VPC and subnets, imported by their ids
 * (`Vpc.fromVpcAttributes`, `Subnet.fromSubnetAttributes`: no lookup, so synth stays offline), and a security group
 * of their own that lets them out to exactly three kinds of destination:
 *
 * - the HSMs: TCP 2223-2225 to the cluster's security group (which gets the matching ingress rule from this one);
 * - the interface endpoints of the AWS services they call: TCP 443 to the endpoints' security group;
 * - DynamoDB: TCP 443 to the region's DynamoDB prefix list (the gateway endpoint's routes).
 *
 * Nothing else: no 0.0.0.0/0, no IPv6, so even a subnet with a NAT route gives them no way to the internet.
 *
 * With `amk:vpcEndpoints=create` (the default) the endpoints are created here: the DynamoDB gateway endpoint on the
 * subnets' route tables, and interface endpoints (private DNS, one ENI per availability zone) for Secrets Manager
 * (the PIN secret, the vault), STS (the vault's access role), SNS (alerts), EventBridge (token invalidation), Step
 * Functions (the unlock function resumes the recovery), CloudWatch Logs and X-Ray, S3 (the restoration test reads
 * the backups; private DNS answers for the regional and bucket names), and CloudHSM (the drill's backup check) when
 * `amk:hsmClusterId` is set. With `existing`, the VPC already has them (shared endpoints of the
 * platform): the functions reach them through `amk:vpcEndpointSecurityGroupId`, which gets an ingress rule from
 * this security group.
 */
import { Annotations, Tags } from "aws-cdk-lib";
import {
  GatewayVpcEndpoint,
  GatewayVpcEndpointAwsService,
  InterfaceVpcEndpoint,
  InterfaceVpcEndpointAwsService,
  Peer,
  Port,
  SecurityGroup,
  Subnet,
  Vpc,
  type ISecurityGroup,
  type ISubnet,
  type IVpc,
} from "aws-cdk-lib/aws-ec2";
import { Construct } from "constructs";
import { HSM_PORTS, type AmkConfig, type NetworkConfig } from "./config.js";

/** The interface endpoints the HSM functions need, by construct id (CloudHSM only with a cluster id). */
export const INTERFACE_ENDPOINTS = {
  SecretsManager: InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
  Sts: InterfaceVpcEndpointAwsService.STS,
  Sns: InterfaceVpcEndpointAwsService.SNS,
  EventBridge: InterfaceVpcEndpointAwsService.EVENTBRIDGE,
  StepFunctions: InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
  Logs: InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
  XRay: InterfaceVpcEndpointAwsService.XRAY,
  // The restoration test (an HSM function) reads the backups. An interface endpoint rather than a gateway one: it
  // is reached through the endpoints' security group like the others, so no S3 prefix list is needed.
  S3: InterfaceVpcEndpointAwsService.S3,
} as const;
export const CLOUDHSM_ENDPOINT = { CloudHsm: InterfaceVpcEndpointAwsService.CLOUDHSM } as const;

/** What a function needs to be placed in the network. */
export interface FunctionPlacement {
  readonly vpc: IVpc;
  readonly vpcSubnets: { readonly subnets: ISubnet[] };
  readonly securityGroups: ISecurityGroup[];
}

export interface HsmNetworkProps {
  readonly config: AmkConfig;
  readonly network: NetworkConfig;
}

export class HsmNetwork extends Construct {
  readonly vpc: IVpc;
  readonly subnets: ISubnet[];
  /** The HSM functions' own security group. */
  readonly functionSecurityGroup: SecurityGroup;
  /** The cluster's security group (imported). */
  readonly hsmSecurityGroup: ISecurityGroup;
  /** The interface endpoints' security group: created with the endpoints, or the existing endpoints' (imported). */
  readonly endpointSecurityGroup: ISecurityGroup;
  /** The endpoints created here, by construct id (empty with `existing`). */
  readonly interfaceEndpoints: Record<string, InterfaceVpcEndpoint>;
  readonly dynamoDbEndpoint?: GatewayVpcEndpoint;

  constructor(scope: Construct, id: string, props: HsmNetworkProps) {
    super(scope, id);
    const { config, network } = props;
    const zones = [...new Set(network.subnets.map((s) => s.availabilityZone))];
    this.vpc = Vpc.fromVpcAttributes(this, "Vpc", { vpcId: network.vpcId, availabilityZones: zones });
    this.subnets = network.subnets.map((s) => {
      const subnet = Subnet.fromSubnetAttributes(this, `Subnet-${s.subnetId}`, {
        subnetId: s.subnetId,
        availabilityZone: s.availabilityZone,
        ...(s.routeTableId === undefined ? {} : { routeTableId: s.routeTableId }),
      });
      if (s.routeTableId === undefined) {
        // Only the DynamoDB gateway endpoint created here needs the route table (config.ts requires it then).
        Annotations.of(subnet).acknowledgeWarning(
          "@aws-cdk/aws-ec2:noSubnetRouteTableId",
          "amk:vpcEndpoints=existing: no gateway endpoint is created, nothing reads the subnet's route table",
        );
      }
      return subnet;
    });
    if (zones.length < 2) {
      Annotations.of(this).addWarningV2(
        "@amk/infra:single-az",
        `The HSM functions are placed in one availability zone only (${zones.join(", ")}): list subnets of the ` +
          "CloudHSM cluster in two or more zones in amk:vpcSubnets, or an outage of that zone stops the service.",
      );
    }

    this.functionSecurityGroup = new SecurityGroup(this, "FunctionSecurityGroup", {
      vpc: this.vpc,
      description: `ArquivoMate Keys (${config.environment}): HSM functions; out to the HSMs, the VPC endpoints and DynamoDB only`,
      allowAllOutbound: false,
      allowAllIpv6Outbound: false,
    });
    Tags.of(this.functionSecurityGroup).add("Name", `amk-${config.environment}-hsm-functions`);

    this.hsmSecurityGroup = SecurityGroup.fromSecurityGroupId(
      this,
      "HsmSecurityGroup",
      network.hsmSecurityGroupId,
    );
    // Egress on ours and, because the imported group is mutable, the matching ingress rule on the cluster's group.
    this.functionSecurityGroup.connections.allowTo(
      this.hsmSecurityGroup,
      Port.tcpRange(HSM_PORTS.from, HSM_PORTS.to),
      "the CloudHSM client to the HSMs (2223-2225)",
    );

    if (network.endpoints.kind === "existing") {
      this.endpointSecurityGroup = SecurityGroup.fromSecurityGroupId(
        this,
        "EndpointSecurityGroup",
        network.endpoints.securityGroupId,
      );
      this.interfaceEndpoints = {};
    } else {
      const endpointSecurityGroup = new SecurityGroup(this, "EndpointSecurityGroup", {
        vpc: this.vpc,
        description: `ArquivoMate Keys (${config.environment}): VPC interface endpoints of the HSM functions (443 in from them only)`,
        allowAllOutbound: false,
        allowAllIpv6Outbound: false,
      });
      Tags.of(endpointSecurityGroup).add("Name", `amk-${config.environment}-vpc-endpoints`);
      this.endpointSecurityGroup = endpointSecurityGroup;
      const services = {
        ...INTERFACE_ENDPOINTS,
        ...(config.hsmBackups === undefined ? {} : CLOUDHSM_ENDPOINT),
      };
      this.interfaceEndpoints = Object.fromEntries(
        Object.entries(services).map(([name, service]) => [
          name,
          new InterfaceVpcEndpoint(this, `${name}Endpoint`, {
            vpc: this.vpc,
            service,
            subnets: { subnets: this.subnets },
            securityGroups: [endpointSecurityGroup],
            privateDnsEnabled: true,
            // Not open to the whole VPC (CDK's default): the ingress rule below admits the HSM functions only.
            open: false,
          }),
        ]),
      );
      this.dynamoDbEndpoint = new GatewayVpcEndpoint(this, "DynamoDbEndpoint", {
        vpc: this.vpc,
        service: GatewayVpcEndpointAwsService.DYNAMODB,
        subnets: [{ subnets: this.subnets }],
      });
    }
    this.functionSecurityGroup.connections.allowTo(
      this.endpointSecurityGroup,
      Port.tcp(443),
      "HTTPS to the VPC interface endpoints",
    );
    this.functionSecurityGroup.addEgressRule(
      Peer.prefixList(network.dynamoDbPrefixListId),
      Port.tcp(443),
      "HTTPS to DynamoDB through its gateway endpoint",
    );
  }

  /** The `vpc`, `vpcSubnets` and `securityGroups` of an HSM function. */
  placement(): FunctionPlacement {
    return {
      vpc: this.vpc,
      vpcSubnets: { subnets: this.subnets },
      securityGroups: [this.functionSecurityGroup],
    };
  }
}
