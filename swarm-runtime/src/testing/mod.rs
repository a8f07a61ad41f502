//! Fakes for tests of code that runs tasks through a [`Runtime`](crate::Runtime)
//! (feature `testing`).
//!
//! - [`ScriptedRuntime`]: a runtime with no processes or containers that behaves
//!   like a real one (a started task runs until it is stopped, `wait` returns its
//!   exit code, `remove` forgets it), and whose tasks do what a [`Script`] says:
//!   fail to prepare or start, exit at once or later with a code, write lines of
//!   output, report a network namespace, ignore the stop signal.
//! - [`ImageCache`]: any runtime (the fake, or the process runtime for tests
//!   that need real processes) with a node-local set of pulled images: `prepare`
//!   of a task whose image was not [pulled](ImageCache::pull) fails with
//!   [`Error::NoSuchImage`](crate::Error::NoSuchImage), as on a node whose
//!   registry does not have it.
//!
//! The image cache is a wrapper rather than an ability of the fake because the
//! tests that need it (rolling updates to an image only some nodes hold) run
//! real tasks: one wrapper gives the refusal to every runtime, the fake included.
//!
//! Both pass the [`conformance`](crate::conformance) suite (the fake once its
//! scripts say what the suite's shell scripts do), which this crate's tests check.

mod images;
mod script;
mod scripted;

pub use images::ImageCache;
pub use script::Script;
pub use scripted::ScriptedRuntime;

#[cfg(test)]
mod tests;
