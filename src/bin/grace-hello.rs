include!("../../examples/hello.rs");
