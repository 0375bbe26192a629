//! The inbound actions the engine knows. Pure data: the policy names a
//! subset of them in its allow-list, `rbac` decides who may run each.

use std::fmt;

/// A command the inbound endpoint can run. The policy's `inbound.actions`
/// allow-lists a subset of these and names the roles for each; a name that
/// is not a variant here is refused when the policy is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InboundAction {
    ApproveKernelProposal,
    RejectKernelProposal,
    InstallModule,
    IngestDataset,
    UpdateMemoryProfile,
}

impl InboundAction {
    pub const ALL: [Self; 5] = [
        Self::ApproveKernelProposal,
        Self::RejectKernelProposal,
        Self::InstallModule,
        Self::IngestDataset,
        Self::UpdateMemoryProfile,
    ];

    /// The wire and policy name, e.g. `approve_kernel_proposal`. Exact match only.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApproveKernelProposal => "approve_kernel_proposal",
            Self::RejectKernelProposal => "reject_kernel_proposal",
            Self::InstallModule => "install_module",
            Self::IngestDataset => "ingest_dataset",
            Self::UpdateMemoryProfile => "update_memory_profile",
        }
    }
}

impl fmt::Display for InboundAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
