//! `pwless-demo`: the demo web app the stack's Deployment runs (see the `pwless_demo` library).
//!
//! `pwless-demo check-login USER...` instead logs in once as each USER with a token signed with
//! the pod's credentials and prints one report line each
//! ([`pwless_iam_auth::probe::Outcome::line`]): what `pwless verify`'s Jobs run.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let config = match pwless_demo::Config::from_environment() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    if arguments.first().map(String::as_str) == Some("check-login") {
        let users = &arguments[1..];
        if users.is_empty() {
            eprintln!("error: usage: pwless-demo check-login USER...");
            return ExitCode::from(2);
        }
        for line in runtime.block_on(pwless_demo::check_logins(&config, users)) {
            println!("{line}");
        }
        return ExitCode::SUCCESS;
    }
    runtime.block_on(async {
        let port = config.listen_port;
        let app = match pwless_demo::app(config).await {
            Ok(app) => app,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(1);
            }
        };
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("error: cannot listen on port {port}: {error}");
                return ExitCode::from(1);
            }
        };
        eprintln!("pwless-demo: listening on port {port}");
        // Kubernetes stops a pod with SIGTERM; a terminal with Ctrl-C.
        let shutdown = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        match axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(1)
            }
        }
    })
}
