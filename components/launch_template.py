"""LaunchTemplate: launch one published image version, and replace machines when it changes.

Upgrading is turn-and-burn by default (`upgrade: replace`): a new version means new machines.
- local: a QEMU VM on a copy-on-write overlay of the version's QCOW2, health-checked by reading
  /etc/release over SSH; a new version replaces the VM, the new one is healthy before the old
  one is stopped (create-before-delete). With `upgrade: in-place` the VM gets its own disk and a
  new version updates it instead: the version's roles are applied to the running VM from its
  tag's tree (imagefactory.launch_local upgrade), which keeps its identity and data.
- aws: an EC2 launch template on the version's AMI and an Auto Scaling group whose instance
  refresh rolls the instances whenever the template changes.
- azure: a VM scale set on the version's Compute Gallery image version, with rolling upgrades.
"""

from __future__ import annotations

from typing import TypedDict

import pulumi

from components._command import PROJECT_ROOT, python_step, step_result, step_script
from imagefactory.steps import ImageEntry, LaunchRequest


class LaunchTemplateArgs(TypedDict, total=False):
    target: str
    """local, aws or azure."""
    version: str
    """The image version to launch; must be in the image stack's `images` output."""
    image: pulumi.Input[ImageEntry]
    """The `images[version]` entry read from the image stack through a StackReference."""
    state_dir: str
    """local: where VM overlays and their serial logs live."""
    accelerator: str
    """local: auto (probe KVM with a real boot), kvm or tcg."""
    upgrade: str
    """local: replace (default: a new version replaces the VM) or in-place (it updates the VM)."""
    registry: str
    """local: the shared s3://… registry (with ?endpoint=…) the QCOW2 is fetched from when its path is
    not on this machine (an application on another machine than the builder)."""
    region: str
    """aws: the region whose AMI is launched."""
    instance_type: str
    """aws: EC2 instance type (default t3.small)."""
    subnet_ids: list[str]
    """aws: subnets of the Auto Scaling group; azure: the first is the scale set's subnet."""
    capacity: int
    """aws/azure: number of instances (default 2)."""
    resource_group_name: str
    """azure: resource group of the scale set."""
    vm_size: str
    """azure: VM size (default Standard_B2s)."""
    admin_ssh_public_key: pulumi.Input[str]
    """azure: SSH public key for the admin user (a public key, not a secret)."""


STRATEGIES = ("replace", "in-place")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"upgrade strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
    return strategy


def require_version(images: dict[str, ImageEntry], version: str) -> ImageEntry:
    """The entry of `version`, or an error that lists the versions the image stack has."""
    if version not in images:
        available = ", ".join(sorted(images)) or "none"
        raise ValueError(f"image version {version!r} is not published by the image stack; it has: {available}")
    return images[version]


class LaunchTemplate(pulumi.ComponentResource):
    """Runs the image version on the chosen target; `launch` describes what runs."""

    launch: pulumi.Output[dict]

    def __init__(self, name: str, args: LaunchTemplateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("imagefactory:launch:LaunchTemplate", name, None, opts)
        target = args.get("target", "local")
        if target not in ("local", "aws", "azure"):
            raise ValueError(f"target {target!r} is not one of local, aws, azure")
        image = pulumi.Output.from_input(args["image"])
        if target != "local" and check_strategy(args.get("upgrade", "replace")) == "in-place":
            raise ValueError(
                f"upgrade strategy in-place is for the local target; on {target} the fleet rolls to new machines, and "
                "an in-place change runs the same playbook through SSM or the run-command extension (README)"
            )
        if target == "local":
            self.launch = self._local(name, args, image)
        elif target == "aws":
            self.launch = self._aws(name, args, image)
        else:
            self.launch = self._azure(name, args, image)
        self.register_outputs({"launch": self.launch})

    def _local(self, name: str, args: LaunchTemplateArgs, image: pulumi.Output[ImageEntry]) -> pulumi.Output[dict]:
        qcow2 = image.apply(lambda i: i["formats"]["qcow2"])
        strategy = check_strategy(args.get("upgrade", "replace"))
        in_place = strategy == "in-place"
        vm = python_step(
            f"{name}-vm",
            LaunchRequest,
            {
                "image_path": qcow2.apply(lambda q: q["path"]),
                "image_sha256": qcow2.apply(lambda q: q["sha256"]),
                "version": args["version"],
                "vm_name": name,
                "state_dir": args.get("state_dir", ".state/vms"),
                "accelerator": args.get("accelerator", "auto"),
                **({"strategy": strategy} if in_place else {}),
                # Another machine than the builder's: the QCOW2 comes from the shared registry.
                **({"shared_registry": args["registry"]} if args.get("registry") else {}),
            },
            # Replace: the version is the machine's identity, so a new version replaces the VM.
            # In place: the machine is its own; a new version is an update of it (its inputs change).
            triggers=[] if in_place else [args["version"], qcow2.apply(lambda q: q["sha256"])],
            # A changed setting (not the version) keeps the running VM: never a second VM beside it.
            update=step_script("launch_local upgrade" if in_place else "launch_local keep"),
            delete=step_script("launch_local delete"),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
            # An application project runs elsewhere: it uses this checkout's launch code.
            code_dir=str(PROJECT_ROOT),
        )
        return step_result(vm, dict)

    def _aws(self, name: str, args: LaunchTemplateArgs, image: pulumi.Output[ImageEntry]) -> pulumi.Output[dict]:
        import pulumi_aws as aws

        region = args.get("region", "us-east-1")

        def ami_of(entry: ImageEntry) -> str:
            amis = entry.get("aws", {})
            if region not in amis:
                raise ValueError(f"image {args['version']} has no AMI in {region}; it has: {', '.join(amis) or 'none'}")
            return amis[region]

        ami = image.apply(ami_of)
        tags = {"ImageVersion": args["version"], "ManagedBy": "imagefactory"}
        template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            image_id=ami,
            instance_type=args.get("instance_type", "t3.small"),
            update_default_version=True,
            tag_specifications=[{"resource_type": "instance", "tags": tags}],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        capacity = args.get("capacity", 2)
        group = aws.autoscaling.Group(
            f"{name}-asg",
            min_size=capacity,
            max_size=capacity * 2,
            desired_capacity=capacity,
            vpc_zone_identifiers=args.get("subnet_ids", []),
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            # Turn-and-burn: a new template version (a new image) rolls every instance.
            instance_refresh={
                "strategy": "Rolling",
                "preferences": {"min_healthy_percentage": 100, "max_healthy_percentage": 200, "auto_rollback": True},
            },
            tags=[{"key": k, "value": v, "propagate_at_launch": True} for k, v in tags.items()],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return pulumi.Output.all(template.id, group.name, ami).apply(
            lambda v: {"launch_template_id": v[0], "auto_scaling_group": v[1], "ami": v[2], "version": args["version"]}
        )

    def _azure(self, name: str, args: LaunchTemplateArgs, image: pulumi.Output[ImageEntry]) -> pulumi.Output[dict]:
        from pulumi_azure_native import compute

        def gallery_version_of(entry: ImageEntry) -> str:
            version_id = entry.get("azure", {}).get("gallery_image_version_id")
            if not version_id:
                raise ValueError(f"image {args['version']} has no Azure Compute Gallery version")
            return version_id

        gallery_version = image.apply(gallery_version_of)
        subnets = args.get("subnet_ids", [])
        scale_set = compute.VirtualMachineScaleSet(
            f"{name}-vmss",
            resource_group_name=args["resource_group_name"],
            sku={"name": args.get("vm_size", "Standard_B2s"), "tier": "Standard", "capacity": args.get("capacity", 2)},
            upgrade_policy={"mode": "Rolling", "rolling_upgrade_policy": {"max_batch_instance_percent": 50}},
            virtual_machine_profile={
                "storage_profile": {"image_reference": {"id": gallery_version}},
                "os_profile": {
                    "computer_name_prefix": name[:9],
                    "admin_username": "azureuser",
                    "linux_configuration": {
                        "disable_password_authentication": True,
                        "ssh": {
                            "public_keys": [
                                {
                                    "path": "/home/azureuser/.ssh/authorized_keys",
                                    "key_data": args.get("admin_ssh_public_key", ""),
                                }
                            ]
                        },
                    },
                },
                "network_profile": {
                    "network_interface_configurations": [
                        {
                            "name": f"{name}-nic",
                            "primary": True,
                            "ip_configurations": [
                                {"name": "ipconfig", "subnet": {"id": subnets[0] if subnets else ""}}
                            ],
                        }
                    ]
                },
            },
            tags={"ImageVersion": args["version"]},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return pulumi.Output.all(scale_set.name, gallery_version).apply(
            lambda v: {"scale_set": v[0], "gallery_image_version_id": v[1], "version": args["version"]}
        )
