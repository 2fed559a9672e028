/**
 * Nova's extra-spec validation (microversion 2.86, `nova/api/validation/
 * extra_specs/`): a key in a namespace Nova knows (hw:, quota:, resources…:,
 * trait…: …) must be one Nova registers, and its value of the registered type
 * (integer with bounds, boolean-like, one of an enum, or matching a pattern).
 * Keys outside those namespaces, and keys without a namespace that Nova does
 * not register, are not checked. The table is Nova's registry as its modules
 * build it; the standard traits and resource classes are those of Debian 12's
 * os-traits 2.9.0 and os-resource-classes 1.1.0 (what Nova there validates with).
 */
import { InvalidArgument } from '../../proto/errors.js'

interface ValueRule {
  type: 'int' | 'str' | 'bool'
  enum?: string[]
  pattern?: string
  min?: number
  max?: number
}

/** [name (Nova's, with {parameters}), name as a regular expression, value rule]. */
const REGISTRY: Array<[string, string, ValueRule]> = [
  ["accel:device_profile", "accel:device_profile", {"type": "str"}],
  ["aggregate_instance_extra_specs:{key}", "aggregate_instance_extra_specs:(?<key>.+)", {"type": "str"}],
  ["capabilities:id", "capabilities:id", {"type": "str"}],
  ["capabilities:uuid", "capabilities:uuid", {"type": "str"}],
  ["capabilities:service_id", "capabilities:service_id", {"type": "str"}],
  ["capabilities:host", "capabilities:host", {"type": "str"}],
  ["capabilities:vcpus", "capabilities:vcpus", {"type": "str"}],
  ["capabilities:memory_mb", "capabilities:memory_mb", {"type": "str"}],
  ["capabilities:local_gb", "capabilities:local_gb", {"type": "str"}],
  ["capabilities:vcpus_used", "capabilities:vcpus_used", {"type": "str"}],
  ["capabilities:memory_mb_used", "capabilities:memory_mb_used", {"type": "str"}],
  ["capabilities:local_gb_used", "capabilities:local_gb_used", {"type": "str"}],
  ["capabilities:hypervisor_type", "capabilities:hypervisor_type", {"type": "str"}],
  ["capabilities:hypervisor_version", "capabilities:hypervisor_version", {"type": "str"}],
  ["capabilities:hypervisor_hostname", "capabilities:hypervisor_hostname", {"type": "str"}],
  ["capabilities:free_ram_mb", "capabilities:free_ram_mb", {"type": "str"}],
  ["capabilities:free_disk_gb", "capabilities:free_disk_gb", {"type": "str"}],
  ["capabilities:current_workload", "capabilities:current_workload", {"type": "str"}],
  ["capabilities:running_vms", "capabilities:running_vms", {"type": "str"}],
  ["capabilities:disk_available_least", "capabilities:disk_available_least", {"type": "str"}],
  ["capabilities:host_ip", "capabilities:host_ip", {"type": "str"}],
  ["capabilities:mapped", "capabilities:mapped", {"type": "str"}],
  ["capabilities:cpu_allocation_ratio", "capabilities:cpu_allocation_ratio", {"type": "str"}],
  ["capabilities:ram_allocation_ratio", "capabilities:ram_allocation_ratio", {"type": "str"}],
  ["capabilities:disk_allocation_ratio", "capabilities:disk_allocation_ratio", {"type": "str"}],
  ["capabilities:total_usable_ram_mb", "capabilities:total_usable_ram_mb", {"type": "str"}],
  ["capabilities:total_usable_disk_gb", "capabilities:total_usable_disk_gb", {"type": "str"}],
  ["capabilities:disk_mb_used", "capabilities:disk_mb_used", {"type": "str"}],
  ["capabilities:free_disk_mb", "capabilities:free_disk_mb", {"type": "str"}],
  ["capabilities:vcpus_total", "capabilities:vcpus_total", {"type": "str"}],
  ["capabilities:vcpus_used", "capabilities:vcpus_used", {"type": "str"}],
  ["capabilities:num_instances", "capabilities:num_instances", {"type": "str"}],
  ["capabilities:num_io_ops", "capabilities:num_io_ops", {"type": "str"}],
  ["capabilities:failed_builds", "capabilities:failed_builds", {"type": "str"}],
  ["capabilities:aggregates", "capabilities:aggregates", {"type": "str"}],
  ["capabilities:cell_uuid", "capabilities:cell_uuid", {"type": "str"}],
  ["capabilities:updated", "capabilities:updated", {"type": "str"}],
  ["capabilities:cpu_info{filter}", "capabilities:cpu_info(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:metrics{filter}", "capabilities:metrics(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:stats{filter}", "capabilities:stats(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:numa_topology{filter}", "capabilities:numa_topology(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:supported_hv_specs{filter}", "capabilities:supported_hv_specs(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:pci_device_pools{filter}", "capabilities:pci_device_pools(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:nodename{filter}", "capabilities:nodename(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:pci_stats{filter}", "capabilities:pci_stats(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:supported_instances{filter}", "capabilities:supported_instances(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:limits{filter}", "capabilities:limits(?<filter>(:\\w+)*)", {"type": "str"}],
  ["capabilities:instances{filter}", "capabilities:instances(?<filter>(:\\w+)*)", {"type": "str"}],
  ["hw:cpu_realtime", "hw:cpu_realtime", {"type": "bool"}],
  ["hw:cpu_realtime_mask", "hw:cpu_realtime_mask", {"type": "str", "pattern": "(\\^)?\\d+((-\\d+)?(,\\^?\\d+(-\\d+)?)?)*"}],
  ["hw:hide_hypervisor_id", "hw:hide_hypervisor_id", {"type": "bool"}],
  ["hw:cpu_policy", "hw:cpu_policy", {"type": "str", "enum": ["dedicated", "shared", "mixed"]}],
  ["hw:cpu_thread_policy", "hw:cpu_thread_policy", {"type": "str", "enum": ["prefer", "isolate", "require"]}],
  ["hw:emulator_threads_policy", "hw:emulator_threads_policy", {"type": "str", "enum": ["isolate", "share"]}],
  ["hw:cpu_dedicated_mask", "hw:cpu_dedicated_mask", {"type": "str", "pattern": "\\^?\\d+((-\\d+)?(,\\^?\\d+(-\\d+)?)?)*"}],
  ["hw:mem_page_size", "hw:mem_page_size", {"type": "str", "pattern": "(large|small|any|\\d+([kKMGT]i?)?(b|bit|B)?)"}],
  ["hw:locked_memory", "hw:locked_memory", {"type": "bool"}],
  ["hw:numa_nodes", "hw:numa_nodes", {"type": "int", "min": 1}],
  ["hw:numa_cpus.{num}", "hw:numa_cpus.(?<num>\\d+)", {"type": "str", "pattern": "\\^?\\d+((-\\d+)?(,\\^?\\d+(-\\d+)?)?)*"}],
  ["hw:numa_mem.{num}", "hw:numa_mem.(?<num>\\d+)", {"type": "int", "min": 1}],
  ["hw:pci_numa_affinity_policy", "hw:pci_numa_affinity_policy", {"type": "str", "enum": ["required", "preferred", "legacy", "socket"]}],
  ["hw:cpu_sockets", "hw:cpu_sockets", {"type": "int", "min": 1}],
  ["hw:cpu_cores", "hw:cpu_cores", {"type": "int", "min": 1}],
  ["hw:cpu_threads", "hw:cpu_threads", {"type": "int", "min": 1}],
  ["hw:cpu_max_sockets", "hw:cpu_max_sockets", {"type": "int", "min": 1}],
  ["hw:cpu_max_cores", "hw:cpu_max_cores", {"type": "int", "min": 1}],
  ["hw:cpu_max_threads", "hw:cpu_max_threads", {"type": "int", "min": 1}],
  ["hw:boot_menu", "hw:boot_menu", {"type": "bool"}],
  ["hw:vif_multiqueue_enabled", "hw:vif_multiqueue_enabled", {"type": "bool"}],
  ["hw:mem_encryption", "hw:mem_encryption", {"type": "bool"}],
  ["hw:mem_encryption_model", "hw:mem_encryption_model", {"type": "str", "enum": ["amd-sev", "amd-sev-es", "amd-sev-snp"]}],
  ["hw:pmem", "hw:pmem", {"type": "str", "pattern": "([a-zA-Z0-9_]+(,)?)+"}],
  ["hw:pmu", "hw:pmu", {"type": "bool"}],
  ["hw:serial_port_count", "hw:serial_port_count", {"type": "int", "min": 0}],
  ["hw:tpm_model", "hw:tpm_model", {"type": "str", "enum": ["tpm-tis", "tpm-crb"]}],
  ["hw:tpm_version", "hw:tpm_version", {"type": "str", "enum": ["1.2", "2.0"]}],
  ["hw:tpm_secret_security", "hw:tpm_secret_security", {"type": "str", "enum": ["user", "host", "deployment"]}],
  ["hw:watchdog_action", "hw:watchdog_action", {"type": "str", "enum": ["none", "pause", "poweroff", "reset", "disabled"]}],
  ["hw:viommu_model", "hw:viommu_model", {"type": "str", "enum": ["intel", "smmuv3", "virtio", "auto"]}],
  ["hw:virtio_packed_ring", "hw:virtio_packed_ring", {"type": "bool"}],
  ["hw:sound_model", "hw:sound_model", {"type": "str", "enum": ["sb16", "es1370", "pcspk", "ac97", "ich6", "ich9", "usb", "virtio"]}],
  ["hw:usb_model", "hw:usb_model", {"type": "str", "enum": ["none", "nec-xhci", "qemu-xhci"]}],
  ["hw:redirected_usb_ports", "hw:redirected_usb_ports", {"type": "int", "min": 0, "max": 15}],
  ["hw:ephemeral_encryption", "hw:ephemeral_encryption", {"type": "bool"}],
  ["hw:ephemeral_encryption_format", "hw:ephemeral_encryption_format", {"type": "str", "enum": ["plain", "luks", "luksv2"]}],
  ["hw_rng:allowed", "hw_rng:allowed", {"type": "bool"}],
  ["hw_rng:rate_bytes", "hw_rng:rate_bytes", {"type": "int", "min": 0}],
  ["hw_rng:rate_period", "hw_rng:rate_period", {"type": "int", "min": 0}],
  ["hw_video:ram_max_mb", "hw_video:ram_max_mb", {"type": "int", "min": 0}],
  ["hide_hypervisor_id", "hide_hypervisor_id", {"type": "bool"}],
  ["group_policy", "group_policy", {"type": "str", "enum": ["isolate", "none"]}],
  ["os:secure_boot", "os:secure_boot", {"type": "str", "enum": ["disabled", "required"]}],
  ["pci_passthrough:alias", "pci_passthrough:alias", {"type": "str", "pattern": "[^:]+:\\d+(?:\\s*,\\s*[^:]+:\\d+)*"}],
  ["quota:cpu_limit", "quota:cpu_limit", {"type": "int", "min": 0}],
  ["quota:cpu_reservation", "quota:cpu_reservation", {"type": "int"}],
  ["quota:cpu_shares_level", "quota:cpu_shares_level", {"type": "str", "enum": ["custom", "high", "normal", "low"]}],
  ["quota:cpu_shares_share", "quota:cpu_shares_share", {"type": "int", "min": 0}],
  ["quota:memory_limit", "quota:memory_limit", {"type": "int", "min": 0}],
  ["quota:memory_reservation", "quota:memory_reservation", {"type": "int"}],
  ["quota:memory_shares_level", "quota:memory_shares_level", {"type": "str", "enum": ["custom", "high", "normal", "low"]}],
  ["quota:memory_shares_share", "quota:memory_shares_share", {"type": "int", "min": 0}],
  ["quota:disk_io_limit", "quota:disk_io_limit", {"type": "int", "min": 0}],
  ["quota:disk_io_reservation", "quota:disk_io_reservation", {"type": "int"}],
  ["quota:disk_io_shares_level", "quota:disk_io_shares_level", {"type": "str", "enum": ["custom", "high", "normal", "low"]}],
  ["quota:disk_io_shares_share", "quota:disk_io_shares_share", {"type": "int", "min": 0}],
  ["quota:vif_limit", "quota:vif_limit", {"type": "int", "min": 0}],
  ["quota:vif_reservation", "quota:vif_reservation", {"type": "int"}],
  ["quota:vif_shares_level", "quota:vif_shares_level", {"type": "str", "enum": ["custom", "high", "normal", "low"]}],
  ["quota:vif_shares_share", "quota:vif_shares_share", {"type": "int", "min": 0}],
  ["quota:cpu_shares", "quota:cpu_shares", {"type": "int", "min": 0}],
  ["quota:cpu_period", "quota:cpu_period", {"type": "int", "min": 0}],
  ["quota:cpu_quota", "quota:cpu_quota", {"type": "int"}],
  ["quota:disk_read_bytes_sec", "quota:disk_read_bytes_sec", {"type": "int", "min": 0}],
  ["quota:disk_read_iops_sec", "quota:disk_read_iops_sec", {"type": "int", "min": 0}],
  ["quota:disk_write_bytes_sec", "quota:disk_write_bytes_sec", {"type": "int", "min": 0}],
  ["quota:disk_write_iops_sec", "quota:disk_write_iops_sec", {"type": "int", "min": 0}],
  ["quota:disk_total_bytes_sec", "quota:disk_total_bytes_sec", {"type": "int", "min": 0}],
  ["quota:disk_total_iops_sec", "quota:disk_total_iops_sec", {"type": "int", "min": 0}],
  ["quota:vif_inbound_average", "quota:vif_inbound_average", {"type": "int", "min": 0}],
  ["quota:vif_inbound_peak", "quota:vif_inbound_peak", {"type": "int", "min": 0}],
  ["quota:vif_inbound_burst", "quota:vif_inbound_burst", {"type": "int", "min": 0}],
  ["quota:vif_outbound_average", "quota:vif_outbound_average", {"type": "int", "min": 0}],
  ["quota:vif_outbound_peak", "quota:vif_outbound_peak", {"type": "int", "min": 0}],
  ["quota:vif_outbound_burst", "quota:vif_outbound_burst", {"type": "int", "min": 0}],
  ["vmware:hw_version", "vmware:hw_version", {"type": "str"}],
  ["vmware:storage_policy", "vmware:storage_policy", {"type": "str"}],
]

const GROUP = '(?<group>([a-zA-Z0-9_-]{1,64})?)'
const TRAITS = ["COMPUTE_DEVICE_TAGGING", "COMPUTE_NODE", "COMPUTE_TRUSTED_CERTS", "COMPUTE_SAME_HOST_COLD_MIGRATE", "COMPUTE_RESCUE_BFV", "COMPUTE_ACCELERATORS", "COMPUTE_SOCKET_PCI_NUMA_AFFINITY", "COMPUTE_REMOTE_MANAGED_PORTS", "COMPUTE_MEM_BACKING_FILE", "COMPUTE_MANAGED_PCI_DEVICE", "COMPUTE_ARCH_AARCH64", "COMPUTE_ARCH_PPC64LE", "COMPUTE_ARCH_MIPSEL", "COMPUTE_ARCH_S390X", "COMPUTE_ARCH_RISCV64", "COMPUTE_ARCH_X86_64", "COMPUTE_CONFIG_DRIVE_REGENERATION", "COMPUTE_EPHEMERAL_ENCRYPTION", "COMPUTE_EPHEMERAL_ENCRYPTION_PLAIN", "COMPUTE_EPHEMERAL_ENCRYPTION_LUKS", "COMPUTE_EPHEMERAL_ENCRYPTION_LUKSV2", "COMPUTE_FIRMWARE_BIOS", "COMPUTE_FIRMWARE_UEFI", "COMPUTE_GRAPHICS_MODEL_BOCHS", "COMPUTE_GRAPHICS_MODEL_CIRRUS", "COMPUTE_GRAPHICS_MODEL_GOP", "COMPUTE_GRAPHICS_MODEL_NONE", "COMPUTE_GRAPHICS_MODEL_QXL", "COMPUTE_GRAPHICS_MODEL_VGA", "COMPUTE_GRAPHICS_MODEL_VIRTIO", "COMPUTE_GRAPHICS_MODEL_VMVGA", "COMPUTE_GRAPHICS_MODEL_XEN", "COMPUTE_IMAGE_TYPE_AKI", "COMPUTE_IMAGE_TYPE_AMI", "COMPUTE_IMAGE_TYPE_ARI", "COMPUTE_IMAGE_TYPE_ISO", "COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_IMAGE_TYPE_RAW", "COMPUTE_IMAGE_TYPE_VDI", "COMPUTE_IMAGE_TYPE_VHD", "COMPUTE_IMAGE_TYPE_VHDX", "COMPUTE_IMAGE_TYPE_VMDK", "COMPUTE_IMAGE_TYPE_PLOOP", "COMPUTE_MIGRATE_AUTO_CONVERGE", "COMPUTE_MIGRATE_POST_COPY", "COMPUTE_NET_ATTACH_INTERFACE", "COMPUTE_NET_ATTACH_INTERFACE_WITH_TAG", "COMPUTE_NET_VIF_MODEL_E1000", "COMPUTE_NET_VIF_MODEL_E1000E", "COMPUTE_NET_VIF_MODEL_LAN9118", "COMPUTE_NET_VIF_MODEL_NETFRONT", "COMPUTE_NET_VIF_MODEL_NE2K_PCI", "COMPUTE_NET_VIF_MODEL_PCNET", "COMPUTE_NET_VIF_MODEL_RTL8139", "COMPUTE_NET_VIF_MODEL_SPAPR_VLAN", "COMPUTE_NET_VIF_MODEL_SRIOV", "COMPUTE_NET_VIF_MODEL_VIRTIO", "COMPUTE_NET_VIF_MODEL_VMXNET", "COMPUTE_NET_VIF_MODEL_VMXNET3", "COMPUTE_SECURITY_TPM_1_2", "COMPUTE_SECURITY_TPM_2_0", "COMPUTE_SECURITY_UEFI_SECURE_BOOT", "COMPUTE_STATUS_DISABLED", "COMPUTE_STORAGE_BUS_FDC", "COMPUTE_STORAGE_BUS_IDE", "COMPUTE_STORAGE_BUS_LXC", "COMPUTE_STORAGE_BUS_SATA", "COMPUTE_STORAGE_BUS_SCSI", "COMPUTE_STORAGE_BUS_USB", "COMPUTE_STORAGE_BUS_VIRTIO", "COMPUTE_STORAGE_BUS_UML", "COMPUTE_STORAGE_BUS_XEN", "COMPUTE_STORAGE_VIRTIO_FS", "COMPUTE_VIOMMU_MODEL_INTEL", "COMPUTE_VIOMMU_MODEL_SMMUV3", "COMPUTE_VIOMMU_MODEL_VIRTIO", "COMPUTE_VIOMMU_MODEL_AUTO", "COMPUTE_VOLUME_ATTACH", "COMPUTE_VOLUME_ATTACH_WITH_TAG", "COMPUTE_VOLUME_EXTEND", "COMPUTE_VOLUME_MULTI_ATTACH", "HW_ARCH_ALPHA", "HW_ARCH_ARMV6", "HW_ARCH_ARMV7", "HW_ARCH_ARMV7B", "HW_ARCH_AARCH64", "HW_ARCH_CRIS", "HW_ARCH_I686", "HW_ARCH_IA64", "HW_ARCH_LM32", "HW_ARCH_M68K", "HW_ARCH_MICROBLAZE", "HW_ARCH_MICROBLAZEEL", "HW_ARCH_MIPS", "HW_ARCH_MIPSEL", "HW_ARCH_MIPS64", "HW_ARCH_MIPS64EL", "HW_ARCH_OPENRISC", "HW_ARCH_PARISC", "HW_ARCH_PARISC64", "HW_ARCH_PPC", "HW_ARCH_PPCLE", "HW_ARCH_PPC64", "HW_ARCH_PPC64LE", "HW_ARCH_PPCEMB", "HW_ARCH_S390", "HW_ARCH_S390X", "HW_ARCH_SH4", "HW_ARCH_SH4EB", "HW_ARCH_SPARC", "HW_ARCH_SPARC64", "HW_ARCH_UNICORE32", "HW_ARCH_X86_64", "HW_ARCH_XTENSA", "HW_ARCH_XTENSAEB", "HW_CPU_HYPERTHREADING", "HW_CPU_AARCH64_FP", "HW_CPU_AARCH64_ASIMD", "HW_CPU_AARCH64_EVTSTRM", "HW_CPU_AARCH64_AES", "HW_CPU_AARCH64_PMULL", "HW_CPU_AARCH64_SHA1", "HW_CPU_AARCH64_SHA2", "HW_CPU_AARCH64_CRC32", "HW_CPU_AARCH64_FPHP", "HW_CPU_AARCH64_ASIMDHP", "HW_CPU_AARCH64_ASIMDRDM", "HW_CPU_AARCH64_ATOMICS", "HW_CPU_AARCH64_JSCVT", "HW_CPU_AARCH64_FCMA", "HW_CPU_AARCH64_LRCPC", "HW_CPU_AARCH64_DCPOP", "HW_CPU_AARCH64_SHA3", "HW_CPU_AARCH64_SM3", "HW_CPU_AARCH64_SM4", "HW_CPU_AARCH64_ASIMDDP", "HW_CPU_AARCH64_SHA512", "HW_CPU_AARCH64_SVE", "HW_CPU_AARCH64_CPUID", "HW_CPU_AMD_SEV", "HW_CPU_PPC64LE_POWER8", "HW_CPU_PPC64LE_POWER9", "HW_CPU_X86_AVX", "HW_CPU_X86_AVX2", "HW_CPU_X86_CLMUL", "HW_CPU_X86_FMA3", "HW_CPU_X86_FMA4", "HW_CPU_X86_F16C", "HW_CPU_X86_MMX", "HW_CPU_X86_SSE", "HW_CPU_X86_SSE2", "HW_CPU_X86_SSE3", "HW_CPU_X86_SSSE3", "HW_CPU_X86_SSE41", "HW_CPU_X86_SSE42", "HW_CPU_X86_SSE4A", "HW_CPU_X86_XOP", "HW_CPU_X86_3DNOW", "HW_CPU_X86_AVX512F", "HW_CPU_X86_AVX512CD", "HW_CPU_X86_AVX512PF", "HW_CPU_X86_AVX512ER", "HW_CPU_X86_AVX512VL", "HW_CPU_X86_AVX512BW", "HW_CPU_X86_AVX512DQ", "HW_CPU_X86_AVX512VNNI", "HW_CPU_X86_AVX512VBMI", "HW_CPU_X86_AVX512IFMA", "HW_CPU_X86_AVX512VBMI2", "HW_CPU_X86_AVX512BITALG", "HW_CPU_X86_AVX512VAES", "HW_CPU_X86_AVX512GFNI", "HW_CPU_X86_AVX512VPCLMULQDQ", "HW_CPU_X86_AVX512VPOPCNTDQ", "HW_CPU_X86_ABM", "HW_CPU_X86_BMI", "HW_CPU_X86_BMI2", "HW_CPU_X86_TBM", "HW_CPU_X86_AESNI", "HW_CPU_X86_SHA", "HW_CPU_X86_MPX", "HW_CPU_X86_SGX", "HW_CPU_X86_TSX", "HW_CPU_X86_ASF", "HW_CPU_X86_VMX", "HW_CPU_X86_SVM", "HW_CPU_X86_PDPE1GB", "HW_CPU_X86_STIBP", "HW_CPU_X86_AMD_SEV", "HW_CPU_X86_AMD_SVM", "HW_CPU_X86_AMD_IBPB", "HW_CPU_X86_AMD_NO_SSB", "HW_CPU_X86_AMD_SSBD", "HW_CPU_X86_AMD_VIRT_SSBD", "HW_CPU_X86_INTEL_MD_CLEAR", "HW_CPU_X86_INTEL_PCID", "HW_CPU_X86_INTEL_SPEC_CTRL", "HW_CPU_X86_INTEL_SSBD", "HW_CPU_X86_INTEL_VMX", "HW_GPU_API_DIRECTX_V10", "HW_GPU_API_DIRECTX_V11", "HW_GPU_API_DIRECTX_V12", "HW_GPU_API_DIRECT2D", "HW_GPU_API_DIRECT3D_V6_0", "HW_GPU_API_DIRECT3D_V7_0", "HW_GPU_API_DIRECT3D_V8_0", "HW_GPU_API_DIRECT3D_V8_1", "HW_GPU_API_DIRECT3D_V9_0", "HW_GPU_API_DIRECT3D_V9_0B", "HW_GPU_API_DIRECT3D_V9_0C", "HW_GPU_API_DIRECT3D_V9_0L", "HW_GPU_API_DIRECT3D_V10_0", "HW_GPU_API_DIRECT3D_V10_1", "HW_GPU_API_DIRECT3D_V11_0", "HW_GPU_API_DIRECT3D_V11_1", "HW_GPU_API_DIRECT3D_V11_2", "HW_GPU_API_DIRECT3D_V11_3", "HW_GPU_API_DIRECT3D_V12_0", "HW_GPU_API_VULKAN", "HW_GPU_API_DXVA", "HW_GPU_API_OPENCL_V1_0", "HW_GPU_API_OPENCL_V1_1", "HW_GPU_API_OPENCL_V1_2", "HW_GPU_API_OPENCL_V2_0", "HW_GPU_API_OPENCL_V2_1", "HW_GPU_API_OPENCL_V2_2", "HW_GPU_API_OPENGL_V1_1", "HW_GPU_API_OPENGL_V1_2", "HW_GPU_API_OPENGL_V1_3", "HW_GPU_API_OPENGL_V1_4", "HW_GPU_API_OPENGL_V1_5", "HW_GPU_API_OPENGL_V2_0", "HW_GPU_API_OPENGL_V2_1", "HW_GPU_API_OPENGL_V3_0", "HW_GPU_API_OPENGL_V3_1", "HW_GPU_API_OPENGL_V3_2", "HW_GPU_API_OPENGL_V3_3", "HW_GPU_API_OPENGL_V4_0", "HW_GPU_API_OPENGL_V4_1", "HW_GPU_API_OPENGL_V4_2", "HW_GPU_API_OPENGL_V4_3", "HW_GPU_API_OPENGL_V4_4", "HW_GPU_API_OPENGL_V4_5", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_0", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_1", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_2", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_3", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V2_0", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V2_1", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_0", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_2", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_5", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_7", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V5_0", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V5_2", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V5_3", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V6_0", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V6_1", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V6_2", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V7_0", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V7_1", "HW_GPU_CUDA_COMPUTE_CAPABILITY_V7_2", "HW_GPU_CUDA_SDK_V6_5", "HW_GPU_CUDA_SDK_V7_5", "HW_GPU_CUDA_SDK_V8_0", "HW_GPU_CUDA_SDK_V9_0", "HW_GPU_CUDA_SDK_V9_1", "HW_GPU_CUDA_SDK_V9_2", "HW_GPU_CUDA_SDK_V10_0", "HW_GPU_MAX_DISPLAY_HEADS_1", "HW_GPU_MAX_DISPLAY_HEADS_2", "HW_GPU_MAX_DISPLAY_HEADS_4", "HW_GPU_MAX_DISPLAY_HEADS_6", "HW_GPU_MAX_DISPLAY_HEADS_8", "HW_GPU_RESOLUTION_W320H240", "HW_GPU_RESOLUTION_W640H480", "HW_GPU_RESOLUTION_W800H600", "HW_GPU_RESOLUTION_W1024H600", "HW_GPU_RESOLUTION_W1024H768", "HW_GPU_RESOLUTION_W1152H864", "HW_GPU_RESOLUTION_W1280H720", "HW_GPU_RESOLUTION_W1280H768", "HW_GPU_RESOLUTION_W1280H800", "HW_GPU_RESOLUTION_W1280H1024", "HW_GPU_RESOLUTION_W1360H768", "HW_GPU_RESOLUTION_W1366H768", "HW_GPU_RESOLUTION_W1440H900", "HW_GPU_RESOLUTION_W1600H900", "HW_GPU_RESOLUTION_W1600H1200", "HW_GPU_RESOLUTION_W1680H1050", "HW_GPU_RESOLUTION_W1920H1080", "HW_GPU_RESOLUTION_W1920H1200", "HW_GPU_RESOLUTION_W2560H1440", "HW_GPU_RESOLUTION_W2560H1600", "HW_GPU_RESOLUTION_W3840H2160", "HW_GPU_RESOLUTION_W7680H4320", "HW_NIC_SRIOV", "HW_NIC_MULTIQUEUE", "HW_NIC_VMDQ", "HW_NIC_PROGRAMMABLE_PIPELINE", "HW_NIC_ACCEL_SSL", "HW_NIC_ACCEL_IPSEC", "HW_NIC_ACCEL_TLS", "HW_NIC_ACCEL_DIFFIEH", "HW_NIC_ACCEL_RSA", "HW_NIC_ACCEL_ECC", "HW_NIC_ACCEL_LZS", "HW_NIC_ACCEL_DEFLATE", "HW_NIC_DCB_PFC", "HW_NIC_DCB_ETS", "HW_NIC_DCB_QCN", "HW_NIC_OFFLOAD_TSO", "HW_NIC_OFFLOAD_GRO", "HW_NIC_OFFLOAD_GSO", "HW_NIC_OFFLOAD_UFO", "HW_NIC_OFFLOAD_LRO", "HW_NIC_OFFLOAD_LSO", "HW_NIC_OFFLOAD_TCS", "HW_NIC_OFFLOAD_UCS", "HW_NIC_OFFLOAD_SCS", "HW_NIC_OFFLOAD_L2CRC", "HW_NIC_OFFLOAD_FDF", "HW_NIC_OFFLOAD_RXVLAN", "HW_NIC_OFFLOAD_TXVLAN", "HW_NIC_OFFLOAD_VXLAN", "HW_NIC_OFFLOAD_GRE", "HW_NIC_OFFLOAD_GENEVE", "HW_NIC_OFFLOAD_TXUDP", "HW_NIC_OFFLOAD_QINQ", "HW_NIC_OFFLOAD_RDMA", "HW_NIC_OFFLOAD_RXHASH", "HW_NIC_OFFLOAD_RX", "HW_NIC_OFFLOAD_TX", "HW_NIC_OFFLOAD_SG", "HW_NIC_OFFLOAD_SWITCHDEV", "HW_NIC_SRIOV_QOS_TX", "HW_NIC_SRIOV_QOS_RX", "HW_NIC_SRIOV_MULTIQUEUE", "HW_NIC_SRIOV_TRUSTED", "HW_NUMA_ROOT", "MISC_SHARES_VIA_AGGREGATE", "OWNER_CYBORG", "OWNER_NOVA", "STORAGE_DISK_HDD", "STORAGE_DISK_SSD"]
const RESOURCE_CLASSES = ["VCPU", "MEMORY_MB", "DISK_GB", "PCI_DEVICE", "SRIOV_NET_VF", "NUMA_SOCKET", "NUMA_CORE", "NUMA_THREAD", "NUMA_MEMORY_MB", "IPV4_ADDRESS", "VGPU", "VGPU_DISPLAY_HEAD", "NET_BW_EGR_KILOBIT_PER_SEC", "NET_BW_IGR_KILOBIT_PER_SEC", "PCPU", "MEM_ENCRYPTION_CONTEXT", "FPGA", "PGPU", "NET_PACKET_RATE_KILOPACKET_PER_SEC", "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC", "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC"]

for (const t of TRAITS) REGISTRY.push([`trait{group}:${t}`, `trait${GROUP}:${t}`, { type: 'str', enum: ['required', 'forbidden'] }])
REGISTRY.push(['trait{group}:CUSTOM_{trait}', `trait${GROUP}:CUSTOM_(?<trait>[A-Z0-9_]+)`, { type: 'str', enum: ['required', 'forbidden'] }])
for (const c of RESOURCE_CLASSES) REGISTRY.push([`resources{group}:${c}`, `resources${GROUP}:${c}`, { type: 'int' }])
REGISTRY.push(['resources{group}:CUSTOM_{resource}', `resources${GROUP}:CUSTOM_(?<resource>[A-Z0-9_]+)`, { type: 'int' }])


interface Validator {
  name: string
  re: RegExp
  value: ValueRule
}

const VALIDATORS = new Map<string, Validator>()
const NAMESPACES = new Set<string>()
for (const [name, re, value] of REGISTRY) {
  VALIDATORS.set(name, { name, re: new RegExp(`^(?:${re})$`), value })
  if (re.includes(':')) NAMESPACES.add(re.split(':', 1)[0]!)
}
const NAMESPACE_RES = [...NAMESPACES].map((ns) => new RegExp(`^(?:${ns})$`))

const BOOLEAN_LIKE = ['1', 't', 'true', 'on', 'y', 'yes', '0', 'f', 'false', 'off', 'n', 'no']

function checkValue(v: Validator, key: string, value: string): void {
  const fail = (why: string) => new InvalidArgument(`Validation failed; ${why}`, { field: key })
  const rule = v.value
  if (rule.type === 'int') {
    if (!/^\s*[-+]?\d+\s*$/.test(value)) throw fail(`'${value}' is not a valid integer value.`)
    const n = Number(value)
    if (rule.max !== undefined && rule.max < n) throw fail(`'${value}' is greater than the max value of '${rule.max}'.`)
    if (rule.min !== undefined && rule.min > n) throw fail(`'${value}' is less than the min value of '${rule.min}'.`)
  } else if (rule.type === 'bool') {
    if (!BOOLEAN_LIKE.includes(value.trim().toLowerCase())) throw fail(`'${value}' is not a valid boolean-like value.`)
  } else if (rule.pattern !== undefined) {
    if (!new RegExp(`^(?:${rule.pattern})$`).test(value)) throw fail(`'${value}' is not of the format '${rule.pattern}'.`)
  } else if (rule.enum && !rule.enum.includes(value)) {
    throw fail(`'${value}' is not one of: ${rule.enum.join(', ')}.`)
  }
}

/** Nova's `validators.validate(name, value)`: InvalidArgument naming the key and why. */
export function validateExtraSpec(key: string, value: string): void {
  const exact = VALIDATORS.get(key)
  if (exact) return checkValue(exact, key, value)
  for (const v of VALIDATORS.values()) if (v.re.test(key)) return checkValue(v, key, value)
  if (!key.includes(':')) return
  const ns = key.split(':', 1)[0]!
  if (NAMESPACE_RES.some((re) => re.test(ns))) throw new InvalidArgument(`Validation failed; extra spec '${key}' does not appear to be a valid extra spec.`, { field: key })
}
