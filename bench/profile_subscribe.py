import asyncio, logging, time, cProfile, pstats
logging.basicConfig(level=logging.WARNING)
from sipsca.config import SipscaConfig, ServerConfig
from sipsca.storage.memory import MemoryStorage
from sipsca.runtime.app import SipApplication
from sipsca.sip.address import Flow
from sipsca.sip.parser import parse_message
TPL=('SUBSCRIBE sip:{u}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:15082;branch=z9hG4bK{u}x;rport\r\nFrom: <sip:{u}@127.0.0.1>;tag=a{u}\r\nTo: <sip:{u}@127.0.0.1>\r\nCall-ID: sub{u}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{u}@127.0.0.1:15082>\r\nEvent: call-info\r\nExpires: 3600\r\nMax-Forwards: 70\r\nUser-Agent: SIPp benchmark phone 3.7\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n')
async def main():
    st=MemoryStorage(); await st.open()
    app=SipApplication(SipscaConfig(server=ServerConfig(domains=("127.0.0.1",))), st)
    await app.start(("udp:127.0.0.1:0",))
    sent=[]
    app.transports.send=lambda d,f: sent.append(d)
    src=Flow("udp","127.0.0.1",15082)
    N=5000
    msgs=[TPL.format(u=1000+i).encode() for i in range(N)]
    t=time.perf_counter()
    pr=cProfile.Profile()
    import os
    if os.environ.get("PROF"): pr.enable()
    for m in msgs:
        app.on_bytes(m, src)
        # answer NOTIFYs
        for d in sent:
            if d.startswith(b"NOTIFY"):
                n=parse_message(d)
                h=n.headers
                resp=("SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n"%(h.get("via"),h.get("from"),h.get("to"),h.get("call-id"),h.get("cseq"))).encode()
                app.on_bytes(resp, src)
        sent.clear()
    pr.disable()
    dt=time.perf_counter()-t
    print(f"{N/dt:.0f} SUBSCRIBE+NOTIFY/s (profiled)")
    if os.environ.get("PROF"): pstats.Stats(pr).sort_stats("cumtime").print_stats(40)
asyncio.run(main())
