//! The part of a kubeadm static pod manifest runbook reads: the first container's image and argv.

use serde::Deserialize;

/// A static pod manifest; everything but `spec.containers` is ignored.
#[derive(Debug, Deserialize)]
pub struct StaticPod {
    pub spec: PodSpec,
}

#[derive(Debug, Deserialize)]
pub struct PodSpec {
    pub containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
pub struct Container {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
}

impl StaticPod {
    /// The first container: its image and its `command` followed by its `args`.
    pub fn first(self) -> Result<(String, Vec<String>), String> {
        let c = self
            .spec
            .containers
            .into_iter()
            .next()
            .ok_or("spec.containers is empty")?;
        Ok((c.image, c.command.into_iter().chain(c.args).collect()))
    }
}
