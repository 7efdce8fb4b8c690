//! The services pmn ships, each declared once in its own file: its
//! [`ServiceSpec`](crate::core::rpc::ServiceSpec), its methods and events (`method!`/`event!` of
//! [`crate::core::rpc`]), the provider side (a [`TypedService`](crate::core::rpc::TypedService)
//! with handlers) and the controller side (typed calls on a [`Remote`](crate::core::rpc::Remote)
//! of the service). Services depend only on `rpc` and `events`: nothing here knows the controller
//! or the provider roles.
//!
//! Services here: [`player`] (media player), [`recorder`] (schedule recordings), [`library`] (browse
//! and search a media library), and [`mpv`] (a [`player::MediaPlayer`] that drives a real mpv).

pub mod library;
pub mod mpv;
pub mod player;
pub mod recorder;
