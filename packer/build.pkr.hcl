build {
  sources = ["source.qemu.local", "source.amazon-ebs.aws", "source.azure-arm.azure"]

  # Provision only once cloud-init is done: its later modules restart sshd, and a new SSH
  # connection made during that restart is reset.
  provisioner "shell" {
    # Then no timer may start during the build: apt-daily would race the Ansible apt tasks for
    # dpkg's lock, and a timer that runs in one build but not in another changes the image.
    inline = ["sudo cloud-init status --wait --long", "sudo systemctl stop '*.timer'"]
  }

  provisioner "ansible" {
    playbook_file = "${path.root}/../ansible/${var.playbook}"
    user          = build.User
    use_proxy     = false
    extra_arguments = [
      "--extra-vars", "@${var.ansible_extra_vars_file}",
      "--scp-extra-args", "'-O'",
    ]
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${path.root}/../ansible/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_SSH_RETRIES=5",
    ]
  }

  # On AWS the final seal step runs here; it powers the instance off, and Packer then
  # snapshots the stopped instance. (The local build runs it as its shutdown_command.)
  provisioner "shell" {
    only              = ["amazon-ebs.aws"]
    inline            = ["sudo /usr/local/sbin/image-seal-final"]
    expect_disconnect = true
  }

  # On Azure the agent deprovisions the VM (and the build user) as the very last step.
  provisioner "shell" {
    only            = ["azure-arm.azure"]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"
    inline = [
      "/usr/local/sbin/image-seal-final --in-place",
      "/usr/sbin/waagent -force -deprovision+user",
      "export HISTSIZE=0",
      "sync",
    ]
  }

  post-processor "manifest" {
    output     = "${var.output_directory}-manifest.json"
    strip_path = true
  }
}
