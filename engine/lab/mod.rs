//! The local lab: real hosts on one machine (network and mount namespaces, sshd, etcd).
