//! Artifacts through links, the same on the shell and in a container: a
//! glob whose base is a link, a glob into a linked directory, a hard link
//! to a file the glob does not take; odd names and links leading out are
//! no error where the glob cannot match, nor is a tree it cannot match in.
//! A need never replaces a directory another need placed. A link in a
//! middle component of a path, leading out, is refused: in a base, or in a
//! followed link's target (a container's engine would follow it, as root).

use xene_core::status::TaskStatus;

use crate::util::{self, busybox_image, run_on};

fn workflow(image: Option<&str>) -> String {
    let image = image.map_or(String::new(), |i| format!("image: {i}"));
    format!(
        r#"name: links
pipelines:
  p:
    tasks:
      build:
        {image}
        steps:
          - name: make
            run: |
              mkdir -p out/reports real h node_modules/pkg
              echo '<a/>' > out/reports/a.xml && echo '<b/>' > real/b.xml
              ln -s out/reports reports && ln -s ../../real out/reports/sub
              printf odd > 'out/reports/odd\name.txt'
              echo hard > h/a.bin && ln h/a.bin h/b.txt
              echo t > a.tgz && ln -s /etc node_modules/out && ln -s gone node_modules/gone
        publish:
          - {{name: xml, path: "reports/**/*.xml"}}
          - {{name: hard, path: "h/*.txt"}}
          - {{name: tgz, path: "*.tgz"}}
      use:
        {image}
        depends_on: [build]
        needs: [xml, hard, tgz]
        steps: ["cat a.xml sub/b.xml b.txt a.tgz"]
      file:
        {image}
        steps: ["echo f > sub"]
        publish: [{{name: sub, path: sub}}]
      clash:
        {image}
        depends_on: [build, file]
        needs: [xml, sub]
        steps: ["echo placed"]
      middle:
        {image}
        steps: ["ln -s /etc evil"]
        publish: [{{name: mid, path: evil/hostname}}]
      through:
        {image}
        steps: ["ln -s /etc evil && mkdir leak && ln -s ../evil/hostname leak/l"]
        publish: [{{name: thru, path: leak}}]
"#
    )
}

async fn check(image: Option<&str>) {
    let root = tempfile::tempdir().unwrap();
    let mut config = util::config();
    config.shell.root = root.path().to_path_buf();
    let run = run_on(&workflow(image), config).await;
    assert_eq!(
        run.task("build").status,
        TaskStatus::Success,
        "{:#?}",
        run.report
    );
    assert_eq!(
        run.logs("use"),
        [
            "fetched xml: 2 files, 10 B",
            "fetched hard: 1 file, 5 B",
            "fetched tgz: 1 file, 2 B",
            "<a/>",
            "<b/>",
            "hard",
            "t",
        ]
    );
    // The file `sub` never replaces the directory `sub` another need made.
    let clash = run.task("clash");
    assert_eq!(clash.status, TaskStatus::Error, "{:#?}", run.report);
    assert!(!run.logs("clash").contains(&"placed"));
    // Every container has /etc/hostname, and so has this machine.
    let statuses = ["middle", "through"].map(|t| run.task(t).status);
    assert_eq!(statuses, [TaskStatus::Error; 2], "{:#?}", run.report);
    for (task, refused) in [
        ("middle", "mid: evil/hostname"),
        ("through", "thru: leak/l"),
    ] {
        let error = run.task(task).error.clone().unwrap_or_default();
        assert!(
            error.starts_with(&format!("artifact {refused} "))
                && error.contains("out of the workspace"),
            "{error}"
        );
        assert!(!run.logs(task).iter().any(|l| l.starts_with("staged")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_through_links_on_the_shell() {
    check(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_through_links_in_containers() {
    check(Some(busybox_image())).await;
}
