//! One suite, run once per backend: `contract!(a, b)` makes `memory::a`, `azurite::a`,
//! `azurite_identity::a`, ... each calling `a(Backend::…)`; `contract!(with setup; a, b)` calls
//! `a(setup(Backend::…).await)`.

macro_rules! contract {
    (with $setup:ident; $($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   super::$name(super::$setup(crate::support::app::Backend::Memory).await).await
               } )*
        }
        mod azurite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   super::$name(super::$setup(crate::support::app::Backend::Azurite).await).await
               } )*
        }
        mod azurite_identity {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() {
                   super::$name(super::$setup(crate::support::app::Backend::AzuriteIdentity).await).await
               } )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(crate::support::app::Backend::Memory).await } )*
        }
        mod azurite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(crate::support::app::Backend::Azurite).await } )*
        }
        mod azurite_identity {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(crate::support::app::Backend::AzuriteIdentity).await } )*
        }
    };
}

pub(crate) use contract;
