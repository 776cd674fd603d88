//! Quotas and the scheduler: each team's guaranteed devices, monthly
//! budget and per-person limit; admin-set weights per device type; a job's
//! priority, its assignment (the scheduler's decision: which worker slot
//! runs it, and whether it only borrows the device), a stop asked of its
//! run (give a borrowed device back, or pause), why it waits and where it
//! stands; device time as intervals on the database's clock, for budgets
//! and the usage report; the scheduler's leader lease; live device figures
//! in the workers' heartbeats.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Teams {
    Table,
    GuaranteedDevices,
    MonthHours,
    PerPerson,
}

#[derive(DeriveIden, Clone, Copy)]
enum Jobs {
    Table,
    Id,
    Priority,
    AssignedWorker,
    Preemptible,
    StopRequest,
    WaitReason,
    QueuePosition,
    NeedsCpuBytes,
    NeedsGpuBytes,
    HoursCpu,
    HoursGpu,
}

#[derive(DeriveIden, Clone, Copy)]
enum Workers {
    Table,
    Live,
}

#[derive(DeriveIden)]
enum DeviceWeights {
    Table,
    Name,
    Weight,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobUsage {
    Table,
    Id,
    JobId,
    TeamId,
    WorkerId,
    DeviceName,
    Weight,
    StartedMs,
    EndedMs,
    Open,
}

#[derive(DeriveIden)]
enum SchedulerLease {
    Table,
    Id,
    Holder,
    ExpiresMs,
}

async fn add(
    m: &SchemaManager<'_>,
    table: impl IntoIden + Clone,
    cols: Vec<ColumnDef>,
) -> Result<(), DbErr> {
    // One column per statement: SQLite alters one column at a time.
    for mut c in cols {
        m.alter_table(
            Table::alter()
                .table(table.clone())
                .add_column(&mut c)
                .to_owned(),
        )
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add(
            m,
            Teams::Table,
            vec![
                // Devices the team holds at once without being preempted.
                ColumnDef::new(Teams::GuaranteedDevices)
                    .integer()
                    .not_null()
                    .default(1)
                    .to_owned(),
                // Weighted device-hours per calendar month (UTC); NULL: none.
                ColumnDef::new(Teams::MonthHours).double().null().to_owned(),
                // Jobs one person may run at once; NULL: no limit.
                ColumnDef::new(Teams::PerPerson).integer().null().to_owned(),
            ],
        )
        .await?;
        add(
            m,
            Jobs::Table,
            vec![
                ColumnDef::new(Jobs::Priority)
                    .integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
                // The worker slot the scheduler gave it to (queued only).
                ColumnDef::new(Jobs::AssignedWorker)
                    .string()
                    .null()
                    .to_owned(),
                ColumnDef::new(Jobs::Preemptible)
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
                // `preempt` or `pause`: the running job's worker stops it
                // (checkpoint) and puts it back, queued or paused.
                ColumnDef::new(Jobs::StopRequest).string().null().to_owned(),
                // JSON: the scheduler's reason for a queued job.
                ColumnDef::new(Jobs::WaitReason).text().null().to_owned(),
                ColumnDef::new(Jobs::QueuePosition)
                    .integer()
                    .null()
                    .to_owned(),
                // The engine's estimate, and the ETA's upper bound (hours),
                // per kind of device; NULL: it cannot run on that kind.
                ColumnDef::new(Jobs::NeedsCpuBytes)
                    .big_integer()
                    .null()
                    .to_owned(),
                ColumnDef::new(Jobs::NeedsGpuBytes)
                    .big_integer()
                    .null()
                    .to_owned(),
                ColumnDef::new(Jobs::HoursCpu).double().null().to_owned(),
                ColumnDef::new(Jobs::HoursGpu).double().null().to_owned(),
            ],
        )
        .await?;
        add(
            m,
            Workers::Table,
            // JSON: live figures of its device (NVML: free memory,
            // utilisation), when it has them.
            vec![ColumnDef::new(Workers::Live).text().null().to_owned()],
        )
        .await?;
        m.create_table(
            Table::create()
                .table(DeviceWeights::Table)
                .col(string(DeviceWeights::Name).primary_key())
                .col(double(DeviceWeights::Weight))
                .col(big_integer(DeviceWeights::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(JobUsage::Table)
                .col(big_pk_auto(JobUsage::Id))
                .col(big_integer(JobUsage::JobId))
                .col(big_integer(JobUsage::TeamId))
                .col(string(JobUsage::WorkerId))
                .col(string(JobUsage::DeviceName))
                .col(double(JobUsage::Weight))
                // The database's clock, Unix ms: a worker's own clock
                // never counts.
                .col(big_integer(JobUsage::StartedMs))
                .col(big_integer(JobUsage::EndedMs))
                .col(boolean(JobUsage::Open))
                .foreign_key(
                    ForeignKey::create()
                        .from(JobUsage::Table, JobUsage::JobId)
                        .to(Jobs::Table, Jobs::Id),
                )
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            (
                "job_usage_team_ended",
                vec![JobUsage::TeamId, JobUsage::EndedMs],
            ),
            ("job_usage_job", vec![JobUsage::JobId]),
        ] {
            let mut i = Index::create();
            i.name(name).table(JobUsage::Table);
            for c in cols {
                i.col(c);
            }
            m.create_index(i.to_owned()).await?;
        }
        m.create_table(
            Table::create()
                .table(SchedulerLease::Table)
                .col(integer(SchedulerLease::Id).primary_key())
                .col(string(SchedulerLease::Holder))
                .col(big_integer(SchedulerLease::ExpiresMs))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("jobs_assigned_worker")
                .table(Jobs::Table)
                .col(Jobs::AssignedWorker)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("jobs_assigned_worker")
                .table(Jobs::Table)
                .to_owned(),
        )
        .await?;
        for t in [
            SchedulerLease::Table.into_iden(),
            JobUsage::Table.into_iden(),
            DeviceWeights::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        let drops: Vec<(DynIden, Vec<DynIden>)> = vec![
            (Workers::Table.into_iden(), vec![Workers::Live.into_iden()]),
            (
                Jobs::Table.into_iden(),
                [
                    Jobs::HoursGpu,
                    Jobs::HoursCpu,
                    Jobs::NeedsGpuBytes,
                    Jobs::NeedsCpuBytes,
                    Jobs::QueuePosition,
                    Jobs::WaitReason,
                    Jobs::StopRequest,
                    Jobs::Preemptible,
                    Jobs::AssignedWorker,
                    Jobs::Priority,
                ]
                .into_iter()
                .map(IntoIden::into_iden)
                .collect(),
            ),
            (
                Teams::Table.into_iden(),
                [
                    Teams::PerPerson,
                    Teams::MonthHours,
                    Teams::GuaranteedDevices,
                ]
                .into_iter()
                .map(IntoIden::into_iden)
                .collect(),
            ),
        ];
        for (table, cols) in drops {
            for c in cols {
                m.alter_table(
                    Table::alter()
                        .table(table.clone())
                        .drop_column(c)
                        .to_owned(),
                )
                .await?;
            }
        }
        Ok(())
    }
}
