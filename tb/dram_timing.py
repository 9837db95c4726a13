"""An independent checker of the HBM3 timing rules on a DRAM command trace.

:class:`TimingChecker` keeps per-bank state and time stamps (a bundle command is
expanded to its banks), written from the JEDEC-style rule list in docs/pim.md,
sharing no code with the RTL generator or with the scheduler model in golden.pim.
The Logic-PIM bench (:mod:`tb.pim`) runs it on every DRAM command of a simulation;
the golden tests run it on the scheduler model's traces.
"""
from __future__ import annotations

from golden import pim as gp


class TimingChecker:
    """Flags every DRAM command issued before its constraint allows it.

    Call :meth:`command` once per issued command with its cycle; violations are
    collected as strings in :attr:`violations`. Rules (d = minimum distance):
    per bank: ACT needs the bank closed, d(PRE->ACT) = tRP, d(ACT->ACT) = tRC,
    d(REF->ACT) = tRFC; RD/WR need the bank open at the bus row, d(ACT->RD/WR) =
    tRCD; PRE needs it open, d(ACT->PRE) = tRAS, d(RD->PRE) = tRTP, d(WR->PRE) =
    tCWL + tBL + tWR. Between ACTs of different banks: tRRD_L within a bank group,
    tRRD_S across; at most 4 ACT commands in any tFAW window. Column commands:
    d(RD->RD), d(WR->WR) = tCCD_L same bank group / tCCD_S other, and tBUS for
    any pair (one bundle burst per tBUS on the TSV bus); d(WR->RD) = tCWL + tBL +
    tWTR_L/S; d(RD->WR) = tCL + tBL + 2 - tCWL (the read-to-write turnaround of
    Ramulator 2's HBM3 model, not the preset's nRTW). ACT is a two-cycle command:
    d(ACT->ACT), d(ACT->PRE), d(ACT->REF) >= tACT = 2 on the pseudo-channel,
    whatever the banks. REF needs every bank closed, d(PRE->REF) = tRP,
    d(ACT->REF) = tRC, and comes at most tREFI + slack after the previous REF
    (or reset). Timing values come from the config (``cfg.timing``; its tRFC
    from golden.hbm3's ns table by JEDEC rounding, 456 at the preset).
    """

    NEG = -(1 << 40)

    def __init__(self, cfg: gp.PIMConfig):
        self.cfg, self.t = cfg, cfg.timing
        nb = cfg.bank_groups * cfg.banks_per_group
        self.nbanks = nb
        self.open = [None] * nb                 # open row or None
        self.last = {k: [self.NEG] * nb for k in ("act", "pre", "rd", "wr")}
        self.acts: list[tuple[int, int]] = []   # (cycle, bank group of first bank)
        self.last_rd = self.last_wr = None      # (cycle, set of bank groups)
        self.last_ref = self.NEG     # for tRFC
        self.ref_base = 0            # previous REF or reset, for the refresh deadline
        self.last_pre_any = self.last_act_any = self.NEG
        self.violations: list[str] = []
        self.counts = dict(ACT=0, PRE=0, RD=0, WR=0, REF=0)

    def banks_of(self, bundle: int) -> list[int]:
        per = self.cfg.banks_per_bundle
        return list(range(bundle * per, (bundle + 1) * per))

    def group(self, bank: int) -> int:
        return bank // self.cfg.banks_per_group

    def _need(self, now, since, d, what):
        if now - since < d:
            self.violations.append(f"cycle {now}: {what}: {now - since} < {d}")

    def command(self, now: int, kind: int, bundle: int, row: int, col: int) -> None:
        t = self.t
        name = gp.CMD_NAMES.get(kind)
        if name is None:
            self.violations.append(f"cycle {now}: unknown command code {kind}")
            return
        self.counts[name] += 1
        if bundle >= self.cfg.bundles and name != "REF":
            self.violations.append(f"cycle {now}: {name} to bundle {bundle} out of range")
            return
        banks = self.banks_of(bundle) if name != "REF" else list(range(self.nbanks))
        groups = {self.group(b) for b in banks}
        if name in ("ACT", "PRE", "REF"):
            self._need(now, self.last_act_any, t.tACT, f"two-cycle ACT: ACT->{name}")
        if name == "ACT":
            for b in banks:
                if self.open[b] is not None:
                    self.violations.append(f"cycle {now}: ACT to open bank {b}")
                self._need(now, self.last["pre"][b], t.tRP, f"tRP bank {b}")
                self._need(now, self.last["act"][b], t.tRC, f"tRC bank {b}")
            self._need(now, self.last_ref, t.tRFC, "tRFC")
            for (c, g) in self.acts[-1:]:
                same = g in groups
                self._need(now, c, t.tRRD_L if same else t.tRRD_S, "tRRD_L" if same else "tRRD_S")
            if len(self.acts) >= 4:
                self._need(now, self.acts[-4][0], t.tFAW, "tFAW (5th ACT in window)")
            if row >= self.cfg.rows:
                self.violations.append(f"cycle {now}: ACT row {row} out of range")
            for b in banks:
                self.open[b] = row
                self.last["act"][b] = now
            self.acts.append((now, min(groups)))
            self.acts = self.acts[-4:]
            self.last_act_any = now
        elif name == "PRE":
            for b in banks:
                if self.open[b] is None:
                    self.violations.append(f"cycle {now}: PRE to closed bank {b}")
                self._need(now, self.last["act"][b], t.tRAS, f"tRAS bank {b}")
                self._need(now, self.last["rd"][b], t.tRTP, f"tRTP bank {b}")
                self._need(now, self.last["wr"][b], t.tCWL + t.tBL + t.tWR, f"tWR bank {b}")
                self.open[b] = None
                self.last["pre"][b] = now
            self.last_pre_any = now
        elif name in ("RD", "WR"):
            for b in banks:
                if self.open[b] != row:
                    self.violations.append(f"cycle {now}: {name} bank {b} row {row}, open row "
                                           f"{self.open[b]}")
                self._need(now, self.last["act"][b], t.tRCD, f"tRCD bank {b}")
            for prev, pname in ((self.last_rd, "RD"), (self.last_wr, "WR")):
                if prev is None:
                    continue
                c, pg = prev
                same = bool(pg & groups)
                if pname == name:
                    self._need(now, c, t.tCCD_L if same else t.tCCD_S,
                               f"tCCD_{'L' if same else 'S'} {pname}->{name}")
                    self._need(now, c, t.tBUS, f"bundle bus {pname}->{name}")
                elif pname == "WR":
                    d = t.tCWL + t.tBL + (t.tWTR_L if same else t.tWTR_S)
                    self._need(now, c, d, f"tWTR_{'L' if same else 'S'}")
                else:
                    self._need(now, c, t.tCL + t.tBL + 2 - t.tCWL,
                               "RD->WR turnaround tCL+tBL+2-tCWL")
            for b in banks:
                self.last["rd" if name == "RD" else "wr"][b] = now
            if name == "RD":
                self.last_rd = (now, groups)
            else:
                self.last_wr = (now, groups)
        else:  # REF
            for b in range(self.nbanks):
                if self.open[b] is not None:
                    self.violations.append(f"cycle {now}: REF with bank {b} open")
            self._need(now, self.last_pre_any, t.tRP, "tRP before REF")
            self._need(now, self.last_act_any, t.tRC, "tRC before REF")
            self._refresh_deadline(now)
            self.last_ref = self.ref_base = now

    def _refresh_deadline(self, now):
        limit = self.t.tREFI + self.t.ref_slack
        if now - self.ref_base > limit:
            self.violations.append(f"cycle {now}: refresh late: {now - self.ref_base} cycles "
                                   f"since the previous REF > tREFI + slack = {limit}")

    def finish(self, now: int) -> None:
        """End of simulation: the refresh must not be overdue."""
        self._refresh_deadline(now)
