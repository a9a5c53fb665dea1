import random
import cocotb
from cocotb.triggers import RisingEdge, ReadOnly
from tickpath.sim.common.tb import TB
from tickpath.sim.common.stream import make_packer, make_unpacker
from tickpath.protocol.records import OrderRecord, EventRecord
from tickpath.sim.matching.stimulus import random_actions, new_model

@cocotb.test()
async def dbg(dut):
    tb = TB(dut)
    dut.peek_addr.value = 0
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 1
    await tb.reset()
    pack = make_packer(OrderRecord)
    unpack = make_unpacker(EventRecord)
    orders = random_actions(random.Random(1), 3)
    model = new_model(4, 64)
    for o in orders:
        tb.log.info("ORDER %s -> %s", o, model.process(o))
    i = 0
    dut.i_stream__payload.value = pack(orders[0]._asdict())
    dut.i_stream__valid.value = 1
    for c in range(60):
        await ReadOnly()
        st = dut.fsm_state.value
        took = dut.i_stream__ready.value == 1 and dut.i_stream__valid.value == 1
        ev = unpack(dut.o_stream__payload.value.to_unsigned()) if dut.o_stream__valid.value == 1 else None
        tb.log.info("c%d st=%s took=%s ev=%s", c, st, took, ev)
        await RisingEdge(dut.clk)
        if took:
            i += 1
            if i < len(orders):
                dut.i_stream__payload.value = pack(orders[i]._asdict())
            else:
                dut.i_stream__valid.value = 0
